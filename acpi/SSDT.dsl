/*
 *
 * Disassembling to symbolic ASL+ operators
 *
 *
 * Original Table Header:
 *     Signature        "SSDT"
 *     Length           0x00000972 (2418)
 *     Revision         0x02
 *     Checksum         0xE3
 *     OEM ID           "VNVDMM"
 *     OEM Table ID     "VNVDIMM "
 *     OEM Revision     0x00000001 (1)
 *     Compiler ID      "RVAT"
 *     Compiler Version 0x01000000 (16777216)
 */
DefinitionBlock ("", "SSDT", 2, "VNVDMM", "VNVDIMM ", 0x00000001)
{
    Scope (\_SB)
    {
        Device (NVDR)
        {
            Name (_HID, "ACPI0012" /* NVDIMM Root Device */)  // _HID: Hardware ID
            Method (_STA, 0, NotSerialized)  // _STA: Status
            {
                Return (0x0F)
            }

            Mutex (MLCK, 0x00)
            OperationRegion (NMBX, SystemMemory, 0x000D0000, 0x3000)
            Field (NMBX, DWordAcc, NoLock, Preserve)
            {
                HDLE,   32,
                REVN,   32,
                FUNC,   32,
                ILEN,   32,
                UUID,   128,
                OLEN,   32,
                CMPL,   32,
                Offset (0x30),
                FITR,   32,
                ERRR,   32,
                FITS,   32,
                ERRS,   32,
                HR00,   32,
                HR01,   32,
                Offset (0xC0),
                HS00,   32,
                HS01,   32
            }

            Field (NMBX, QWordAcc, NoLock, Preserve)
            {
                Offset (0x1000),
                IBSM,   512
            }

            Field (NMBX, QWordAcc, NoLock, Preserve)
            {
                Offset (0x1000),
                IBUF,   32768
            }

            Field (NMBX, QWordAcc, NoLock, Preserve)
            {
                Offset (0x2000),
                OBSM,   512
            }

            Field (NMBX, QWordAcc, NoLock, Preserve)
            {
                Offset (0x2000),
                OBMD,   2048
            }

            Field (NMBX, QWordAcc, NoLock, Preserve)
            {
                Offset (0x2000),
                OBUF,   32768
            }

            OperationRegion (NDBL, SystemMemory, 0xC0000000, 0x04)
            Field (NDBL, DWordAcc, NoLock, Preserve)
            {
                DBEL,   32
            }

            Name (SEQN, Zero)
            Method (EBUF, 0, NotSerialized)
            {
                Return (Mid (Buffer (One)
                    {
                         0x00                                             // .
                    }, Zero, Zero))
            }

            Method (DINP, 1, Serialized)
            {
                If ((ObjectType (Arg0) == 0x04))
                {
                    If ((SizeOf (Arg0) > Zero))
                    {
                        Local0 = DerefOf (Arg0 [Zero])
                        If ((ObjectType (Local0) == 0x03))
                        {
                            Return (Local0)
                        }
                    }
                }

                Return (EBUF ())
            }

            Method (LSTA, 1, NotSerialized)
            {
                Local0 = (Arg0 & 0xFFFF)
                If ((Local0 == Zero))
                {
                    If ((Arg0 & 0x00010000))
                    {
                        Return (0x03)
                    }

                    Return (Zero)
                }

                If ((Local0 == 0x03))
                {
                    Return (0x02)
                }

                Return (One)
            }

            Method (NCAL, 5, Serialized)
            {
                Acquire (MLCK, 0xFFFF)
                SEQN = ((SEQN & 0xFFFF) + One)
                If ((SEQN == CMPL))
                {
                    SEQN = ((SEQN & 0xFFFF) + One)
                }

                HDLE = Arg0
                REVN = Arg2
                FUNC = Arg3
                If ((ObjectType (Arg1) == 0x03))
                {
                    UUID = Arg1
                }
                Else
                {
                    UUID = Zero
                }

                Local0 = SizeOf (Arg4)
                ILEN = Local0
                If (((Local0 > Zero) && (Local0 <= 0x1000)))
                {
                    If ((Local0 <= 0x40))
                    {
                        IBSM = Arg4
                    }
                    Else
                    {
                        IBUF = Arg4
                    }
                }

                DBEL = SEQN /* \_SB_.NVDR.SEQN */
                Local1 = Zero
                While (((CMPL != SEQN) && (Local1 < 0x000F4240)))
                {
                    Stall (0x0A)
                    Local1++
                }

                If ((CMPL != SEQN))
                {
                    Release (MLCK)
                    Return (Buffer (0x04)
                    {
                         0x04, 0x00, 0x00, 0x00                           // ....
                    })
                }

                Local2 = OLEN /* \_SB_.NVDR.OLEN */
                If ((Local2 > 0x1000))
                {
                    Local2 = 0x1000
                }

                If ((Local2 <= 0x40))
                {
                    Mid (OBSM, Zero, Local2, Local3)
                }
                ElseIf ((Local2 <= 0x0100))
                {
                    Mid (OBMD, Zero, Local2, Local3)
                }
                Else
                {
                    Mid (OBUF, Zero, Local2, Local3)
                }

                Release (MLCK)
                Return (Local3)
            }

            Method (_DSM, 4, Serialized)  // _DSM: Device-Specific Method
            {
                Return (NCAL (Zero, Arg0, Arg1, Arg2, DINP (Arg3)))
            }

            Method (_FIT, 0, NotSerialized)  // _FIT: Firmware Interface Table
            {
                Return (Buffer (0x01B0)
                {
                    /* 0000 */  0x00, 0x00, 0x38, 0x00, 0x01, 0x00, 0x02, 0x00,  // ..8.....
                    /* 0008 */  0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,  // ........
                    /* 0010 */  0x79, 0xD3, 0xF0, 0x66, 0xF3, 0xB4, 0x74, 0x40,  // y..f..t@
                    /* 0018 */  0xAC, 0x43, 0x0D, 0x33, 0x18, 0xB7, 0x8C, 0xDB,  // .C.3....
                    /* 0020 */  0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,  // ........
                    /* 0028 */  0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00,  // ...@....
                    /* 0030 */  0x08, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // ........
                    /* 0038 */  0x01, 0x00, 0x30, 0x00, 0x01, 0x00, 0x00, 0x00,  // ..0.....
                    /* 0040 */  0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00,  // ........
                    /* 0048 */  0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00,  // ...@....
                    /* 0050 */  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // ........
                    /* 0058 */  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // ........
                    /* 0060 */  0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,  // ........
                    /* 0068 */  0x04, 0x00, 0x50, 0x00, 0x01, 0x00, 0x80, 0x89,  // ..P.....
                    /* 0070 */  0x09, 0x7A, 0x00, 0x18, 0x80, 0x89, 0x09, 0x7A,  // .z.....z
                    /* 0078 */  0x00, 0x18, 0x01, 0xA2, 0x26, 0x11, 0x00, 0x00,  // ....&...
                    /* 0080 */  0x56, 0x00, 0x00, 0x01, 0x01, 0x03, 0x00, 0x00,  // V.......
                    /* 0088 */  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // ........
                    /* 0090 */  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // ........
                    /* 0098 */  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // ........
                    /* 00A0 */  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // ........
                    /* 00A8 */  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // ........
                    /* 00B0 */  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // ........
                    /* 00B8 */  0x06, 0x00, 0x18, 0x00, 0x01, 0x00, 0x00, 0x00,  // ........
                    /* 00C0 */  0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // ........
                    /* 00C8 */  0x00, 0x00, 0x10, 0xC0, 0x00, 0x00, 0x00, 0x00,  // ........
                    /* 00D0 */  0x00, 0x00, 0x38, 0x00, 0x02, 0x00, 0x02, 0x00,  // ..8.....
                    /* 00D8 */  0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00,  // ........
                    /* 00E0 */  0x79, 0xD3, 0xF0, 0x66, 0xF3, 0xB4, 0x74, 0x40,  // y..f..t@
                    /* 00E8 */  0xAC, 0x43, 0x0D, 0x33, 0x18, 0xB7, 0x8C, 0xDB,  // .C.3....
                    /* 00F0 */  0x00, 0x00, 0x00, 0x40, 0x01, 0x00, 0x00, 0x00,  // ...@....
                    /* 00F8 */  0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00,  // ...@....
                    /* 0100 */  0x08, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // ........
                    /* 0108 */  0x01, 0x00, 0x30, 0x00, 0x11, 0x00, 0x00, 0x00,  // ..0.....
                    /* 0110 */  0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x02, 0x00,  // ........
                    /* 0118 */  0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00,  // ...@....
                    /* 0120 */  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // ........
                    /* 0128 */  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // ........
                    /* 0130 */  0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,  // ........
                    /* 0138 */  0x04, 0x00, 0x50, 0x00, 0x02, 0x00, 0x80, 0x89,  // ..P.....
                    /* 0140 */  0x09, 0x7A, 0x00, 0x18, 0x80, 0x89, 0x09, 0x7A,  // .z.....z
                    /* 0148 */  0x00, 0x18, 0x01, 0xA2, 0x26, 0x11, 0x00, 0x00,  // ....&...
                    /* 0150 */  0x56, 0x00, 0x00, 0x02, 0x01, 0x03, 0x00, 0x00,  // V.......
                    /* 0158 */  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // ........
                    /* 0160 */  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // ........
                    /* 0168 */  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // ........
                    /* 0170 */  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // ........
                    /* 0178 */  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // ........
                    /* 0180 */  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // ........
                    /* 0188 */  0x06, 0x00, 0x18, 0x00, 0x11, 0x00, 0x00, 0x00,  // ........
                    /* 0190 */  0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // ........
                    /* 0198 */  0x00, 0x10, 0x10, 0xC0, 0x00, 0x00, 0x00, 0x00,  // ........
                    /* 01A0 */  0x07, 0x00, 0x10, 0x00, 0x01, 0x00, 0x00, 0x00,  // ........
                    /* 01A8 */  0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00   // ........
                })
            }

            Device (NV00)
            {
                Name (_ADR, One)  // _ADR: Address
                Method (_STA, 0, NotSerialized)  // _STA: Status
                {
                    Return (0x0F)
                }

                Method (_DSM, 4, Serialized)  // _DSM: Device-Specific Method
                {
                    Return (\_SB.NVDR.NCAL (One, Arg0, Arg1, Arg2, \_SB.NVDR.DINP (Arg3)))
                }

                Method (_LSI, 0, Serialized)  // _LSI: Label Storage Information
                {
                    Local0 = \_SB.NVDR.NCAL (One, ToUUID ("4309ac30-0d11-11e4-9191-0800200c9a66") /* Unknown UUID */, One, 0x04, \_SB.NVDR.EBUF ())
                    Local1 = Package (0x03)
                        {
                            One,
                            Zero,
                            Zero
                        }
                    Local2 = SizeOf (Local0)
                    Local3 = One
                    If ((0x04 <= Local2))
                    {
                        Local3 = \_SB.NVDR.LSTA ((ToInteger (Mid (Local0, Zero, 0x04)) & 0xFFFF
                            ))
                    }

                    If ((0x0C <= Local2))
                    {
                        Local1 [One] = ToInteger (Mid (Local0, 0x04, 0x04))
                        Local1 [0x02] = ToInteger (Mid (Local0, 0x08, 0x04))
                    }
                    ElseIf ((Local3 == Zero))
                    {
                        Local3 = One
                    }

                    Local1 [Zero] = Local3
                    Return (Local1)
                }

                Method (_LSR, 2, Serialized)  // _LSR: Label Storage Read
                {
                    Local0 = \_SB.NVDR.NCAL (One, ToUUID ("4309ac30-0d11-11e4-9191-0800200c9a66") /* Unknown UUID */, One, 0x05, Concatenate (Mid (ToBuffer (Arg0
                        ), Zero, 0x04), Mid (ToBuffer (Arg1), Zero, 0x04)))
                    Local1 = Package (0x02)
                        {
                            One,
                            Zero
                        }
                    Local1 [One] = \_SB.NVDR.EBUF ()
                    Local2 = SizeOf (Local0)
                    If ((0x04 <= Local2))
                    {
                        Local1 [Zero] = \_SB.NVDR.LSTA (ToInteger (Mid (Local0, Zero, 0x04)
                            ))
                        Local1 [One] = Mid (Local0, 0x04, (Local2 - 0x04)
                            )
                    }

                    Return (Local1)
                }

                Method (_LSW, 3, Serialized)  // _LSW: Label Storage Write
                {
                    Local0 = \_SB.NVDR.NCAL (One, ToUUID ("4309ac30-0d11-11e4-9191-0800200c9a66") /* Unknown UUID */, One, 0x06, Concatenate (Concatenate (Mid (ToBuffer (
                        Arg0), Zero, 0x04), Mid (ToBuffer (Arg1), Zero, 0x04)),
                        Arg2))
                    If ((0x04 <= SizeOf (Local0)))
                    {
                        Return (\_SB.NVDR.LSTA (ToInteger (Mid (Local0, Zero, 0x04))))
                    }

                    Return (One)
                }
            }

            Device (NV01)
            {
                Name (_ADR, 0x11)  // _ADR: Address
                Method (_STA, 0, NotSerialized)  // _STA: Status
                {
                    Return (0x0F)
                }

                Method (_DSM, 4, Serialized)  // _DSM: Device-Specific Method
                {
                    Return (\_SB.NVDR.NCAL (0x11, Arg0, Arg1, Arg2, \_SB.NVDR.DINP (Arg3)))
                }

                Method (_LSI, 0, Serialized)  // _LSI: Label Storage Information
                {
                    Local0 = \_SB.NVDR.NCAL (0x11, ToUUID ("4309ac30-0d11-11e4-9191-0800200c9a66") /* Unknown UUID */, One, 0x04, \_SB.NVDR.EBUF ())
                    Local1 = Package (0x03)
                        {
                            One,
                            Zero,
                            Zero
                        }
                    Local2 = SizeOf (Local0)
                    Local3 = One
                    If ((0x04 <= Local2))
                    {
                        Local3 = \_SB.NVDR.LSTA ((ToInteger (Mid (Local0, Zero, 0x04)) & 0xFFFF
                            ))
                    }

                    If ((0x0C <= Local2))
                    {
                        Local1 [One] = ToInteger (Mid (Local0, 0x04, 0x04))
                        Local1 [0x02] = ToInteger (Mid (Local0, 0x08, 0x04))
                    }
                    ElseIf ((Local3 == Zero))
                    {
                        Local3 = One
                    }

                    Local1 [Zero] = Local3
                    Return (Local1)
                }

                Method (_LSR, 2, Serialized)  // _LSR: Label Storage Read
                {
                    Local0 = \_SB.NVDR.NCAL (0x11, ToUUID ("4309ac30-0d11-11e4-9191-0800200c9a66") /* Unknown UUID */, One, 0x05, Concatenate (Mid (ToBuffer (Arg0
                        ), Zero, 0x04), Mid (ToBuffer (Arg1), Zero, 0x04)))
                    Local1 = Package (0x02)
                        {
                            One,
                            Zero
                        }
                    Local1 [One] = \_SB.NVDR.EBUF ()
                    Local2 = SizeOf (Local0)
                    If ((0x04 <= Local2))
                    {
                        Local1 [Zero] = \_SB.NVDR.LSTA (ToInteger (Mid (Local0, Zero, 0x04)
                            ))
                        Local1 [One] = Mid (Local0, 0x04, (Local2 - 0x04)
                            )
                    }

                    Return (Local1)
                }

                Method (_LSW, 3, Serialized)  // _LSW: Label Storage Write
                {
                    Local0 = \_SB.NVDR.NCAL (0x11, ToUUID ("4309ac30-0d11-11e4-9191-0800200c9a66") /* Unknown UUID */, One, 0x06, Concatenate (Concatenate (Mid (ToBuffer (
                        Arg0), Zero, 0x04), Mid (ToBuffer (Arg1), Zero, 0x04)),
                        Arg2))
                    If ((0x04 <= SizeOf (Local0)))
                    {
                        Return (\_SB.NVDR.LSTA (ToInteger (Mid (Local0, Zero, 0x04))))
                    }

                    Return (One)
                }
            }

            Method (NEVT, 0, Serialized)
            {
                Local0 = FITR /* \_SB_.NVDR.FITR */
                If ((Local0 != FITS))
                {
                    FITS = Local0
                    Notify (\_SB.NVDR, 0x80) // Status Change
                }

                Local0 = ERRR /* \_SB_.NVDR.ERRR */
                If ((Local0 != ERRS))
                {
                    ERRS = Local0
                    Notify (\_SB.NVDR, 0x81) // Information Change
                }

                Local0 = HR00 /* \_SB_.NVDR.HR00 */
                If ((Local0 != HS00))
                {
                    HS00 = Local0
                    Notify (\_SB.NVDR.NV00, 0x81) // Information Change
                }

                Local0 = HR01 /* \_SB_.NVDR.HR01 */
                If ((Local0 != HS01))
                {
                    HS01 = Local0
                    Notify (\_SB.NVDR.NV01, 0x81) // Information Change
                }
            }
        }
    }

    Scope (\_SB)
    {
        Device (GED0)
        {
            Name (_HID, "ACPI0013" /* Generic Event Device */)  // _HID: Hardware ID
            Name (_UID, Zero)  // _UID: Unique ID
            Name (_CRS, ResourceTemplate ()  // _CRS: Current Resource Settings
            {
                Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )
                {
                    0x00000005,
                }
            })
            OperationRegion (GDST, SystemMemory, 0xC0001000, 0x04)
            Field (GDST, DWordAcc, NoLock, Preserve)
            {
                GDAT,   32
            }

            Method (_EVT, 1, Serialized)  // _EVT: Event
            {
                Local0 = GDAT /* \_SB_.GED0.GDAT */
                If ((Local0 & One))
                {
                    \_SB.NVDR.NEVT ()
                }
            }
        }
    }
}

