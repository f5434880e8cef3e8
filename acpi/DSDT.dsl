/*
 *
 * Disassembling to symbolic ASL+ operators
 *
 *
 * Original Table Header:
 *     Signature        "DSDT"
 *     Length           0x000000FD (253)
 *     Revision         0x02
 *     Checksum         0xCE
 *     OEM ID           "VNVDMM"
 *     OEM Table ID     "VNVDDSDT"
 *     OEM Revision     0x00000001 (1)
 *     Compiler ID      "RVAT"
 *     Compiler Version 0x01000000 (16777216)
 */
DefinitionBlock ("", "DSDT", 2, "VNVDMM", "VNVDDSDT", 0x00000001)
{
    Name (_S5, Package (0x04)  // _S5_: S5 System State
    {
        0x05,
        0x05,
        Zero,
        Zero
    })
    Scope (\_SB)
    {
        Device (COM1)
        {
            Name (_HID, EisaId ("PNP0501") /* 16550A-compatible COM Serial Port */)  // _HID: Hardware ID
            Name (_UID, Zero)  // _UID: Unique ID
            Name (_CRS, ResourceTemplate ()  // _CRS: Current Resource Settings
            {
                IO (Decode16,
                    0x03F8,             // Range Minimum
                    0x03F8,             // Range Maximum
                    0x01,               // Alignment
                    0x08,               // Length
                    )
                Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )
                {
                    0x00000004,
                }
            })
        }

        Device (COM2)
        {
            Name (_HID, EisaId ("PNP0501") /* 16550A-compatible COM Serial Port */)  // _HID: Hardware ID
            Name (_UID, One)  // _UID: Unique ID
            Name (_CRS, ResourceTemplate ()  // _CRS: Current Resource Settings
            {
                IO (Decode16,
                    0x02F8,             // Range Minimum
                    0x02F8,             // Range Maximum
                    0x01,               // Alignment
                    0x08,               // Length
                    )
                Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )
                {
                    0x00000003,
                }
            })
        }

        Device (COM3)
        {
            Name (_HID, EisaId ("PNP0501") /* 16550A-compatible COM Serial Port */)  // _HID: Hardware ID
            Name (_UID, 0x02)  // _UID: Unique ID
            Name (_CRS, ResourceTemplate ()  // _CRS: Current Resource Settings
            {
                IO (Decode16,
                    0x03E8,             // Range Minimum
                    0x03E8,             // Range Maximum
                    0x01,               // Alignment
                    0x08,               // Length
                    )
                Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )
                {
                    0x0000000A,
                }
            })
        }

        Device (PEVT)
        {
            Name (_HID, "QEMU0001")  // _HID: Hardware ID
            Name (_CRS, ResourceTemplate ()  // _CRS: Current Resource Settings
            {
                IO (Decode16,
                    0x0505,             // Range Minimum
                    0x0505,             // Range Maximum
                    0x01,               // Alignment
                    0x01,               // Length
                    )
            })
        }
    }
}

