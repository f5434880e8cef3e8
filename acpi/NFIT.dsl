/*
 *
 *
 * ACPI Data Table [NFIT]
 *
 * Format: [HexOffset DecimalOffset ByteLength]  FieldName : FieldValue
 */

[000h 0000   4]                    Signature : "NFIT"    [NVDIMM Firmware Interface Table]
[004h 0004   4]                 Table Length : 000001D8
[008h 0008   1]                     Revision : 01
[009h 0009   1]                     Checksum : CF
[00Ah 0010   6]                       Oem ID : "VNVDMM"
[010h 0016   8]                 Oem Table ID : "VNVDIMM "
[018h 0024   4]                 Oem Revision : 00000001
[01Ch 0028   4]              Asl Compiler ID : "RVAT"
[020h 0032   4]        Asl Compiler Revision : 01000000

[024h 0036   4]                     Reserved : 00000000

[028h 0040   2]                Subtable Type : 0000 [System Physical Address Range]
[02Ah 0042   2]                       Length : 0038

[02Ch 0044   2]                  Range Index : 0001
[02Eh 0046   2]        Flags (decoded below) : 0002
                   Add/Online Operation Only : 0
                      Proximity Domain Valid : 1
[030h 0048   4]                     Reserved : 00000000
[034h 0052   4]             Proximity Domain : 00000001
[038h 0056  16]             Region Type GUID : 66F0D379-B4F3-4074-AC43-0D3318B78CDB
[048h 0072   8]           Address Range Base : 0000000100000000
[050h 0080   8]         Address Range Length : 0000000040000000
[058h 0088   8]         Memory Map Attribute : 0000000000008008

[060h 0096   2]                Subtable Type : 0001 [Memory Range Map]
[062h 0098   2]                       Length : 0030

[064h 0100   4]                Device Handle : 00000001
[068h 0104   2]                  Physical Id : 0000
[06Ah 0106   2]                    Region Id : 0000
[06Ch 0108   2]                  Range Index : 0001
[06Eh 0110   2]         Control Region Index : 0001
[070h 0112   8]                  Region Size : 0000000040000000
[078h 0120   8]                Region Offset : 0000000000000000
[080h 0128   8]          Address Region Base : 0000000000000000
[088h 0136   2]             Interleave Index : 0000
[08Ah 0138   2]              Interleave Ways : 0001
[08Ch 0140   2]                        Flags : 0000
                       Save to device failed : 0
                  Restore from device failed : 0
                       Platform flush failed : 0
                            Device not armed : 0
                      Health events observed : 0
                       Health events enabled : 0
                              Mapping failed : 0
[08Eh 0142   2]                     Reserved : 0000

[090h 0144   2]                Subtable Type : 0004 [NVDIMM Control Region]
[092h 0146   2]                       Length : 0050

[094h 0148   2]                 Region Index : 0001
[096h 0150   2]                    Vendor Id : 8980
[098h 0152   2]                    Device Id : 7A09
[09Ah 0154   2]                  Revision Id : 1800
[09Ch 0156   2]          Subsystem Vendor Id : 8980
[09Eh 0158   2]          Subsystem Device Id : 7A09
[0A0h 0160   2]        Subsystem Revision Id : 1800
[0A2h 0162   1]                 Valid Fields : 01
[0A3h 0163   1]       Manufacturing Location : A2
[0A4h 0164   2]           Manufacturing Date : 1126
[0A6h 0166   2]                     Reserved : 0000
[0A8h 0168   4]                Serial Number : 01000056
[0ACh 0172   2]                         Code : 0301
[0AEh 0174   2]                 Window Count : 0000
[0B0h 0176   8]                  Window Size : 0000000000000000
[0B8h 0184   8]               Command Offset : 0000000000000000
[0C0h 0192   8]                 Command Size : 0000000000000000
[0C8h 0200   8]                Status Offset : 0000000000000000
[0D0h 0208   8]                  Status Size : 0000000000000000
[0D8h 0216   2]                        Flags : 0000
                            Windows buffered : 0
[0DAh 0218   6]                    Reserved1 : 000000000000

[0E0h 0224   2]                Subtable Type : 0006 [Flush Hint Address]
[0E2h 0226   2]                       Length : 0018

[0E4h 0228   4]                Device Handle : 00000001
[0E8h 0232   2]                   Hint Count : 0001
[0EAh 0234   6]                     Reserved : 000000000000
[0F0h 0240   8]                 Hint Address : 00000000C0100000

[0F8h 0248   2]                Subtable Type : 0000 [System Physical Address Range]
[0FAh 0250   2]                       Length : 0038

[0FCh 0252   2]                  Range Index : 0002
[0FEh 0254   2]        Flags (decoded below) : 0002
                   Add/Online Operation Only : 0
                      Proximity Domain Valid : 1
[100h 0256   4]                     Reserved : 00000000
[104h 0260   4]             Proximity Domain : 00000002
[108h 0264  16]             Region Type GUID : 66F0D379-B4F3-4074-AC43-0D3318B78CDB
[118h 0280   8]           Address Range Base : 0000000140000000
[120h 0288   8]         Address Range Length : 0000000040000000
[128h 0296   8]         Memory Map Attribute : 0000000000008008

[130h 0304   2]                Subtable Type : 0001 [Memory Range Map]
[132h 0306   2]                       Length : 0030

[134h 0308   4]                Device Handle : 00000011
[138h 0312   2]                  Physical Id : 0001
[13Ah 0314   2]                    Region Id : 0000
[13Ch 0316   2]                  Range Index : 0002
[13Eh 0318   2]         Control Region Index : 0002
[140h 0320   8]                  Region Size : 0000000040000000
[148h 0328   8]                Region Offset : 0000000000000000
[150h 0336   8]          Address Region Base : 0000000000000000
[158h 0344   2]             Interleave Index : 0000
[15Ah 0346   2]              Interleave Ways : 0001
[15Ch 0348   2]                        Flags : 0000
                       Save to device failed : 0
                  Restore from device failed : 0
                       Platform flush failed : 0
                            Device not armed : 0
                      Health events observed : 0
                       Health events enabled : 0
                              Mapping failed : 0
[15Eh 0350   2]                     Reserved : 0000

[160h 0352   2]                Subtable Type : 0004 [NVDIMM Control Region]
[162h 0354   2]                       Length : 0050

[164h 0356   2]                 Region Index : 0002
[166h 0358   2]                    Vendor Id : 8980
[168h 0360   2]                    Device Id : 7A09
[16Ah 0362   2]                  Revision Id : 1800
[16Ch 0364   2]          Subsystem Vendor Id : 8980
[16Eh 0366   2]          Subsystem Device Id : 7A09
[170h 0368   2]        Subsystem Revision Id : 1800
[172h 0370   1]                 Valid Fields : 01
[173h 0371   1]       Manufacturing Location : A2
[174h 0372   2]           Manufacturing Date : 1126
[176h 0374   2]                     Reserved : 0000
[178h 0376   4]                Serial Number : 02000056
[17Ch 0380   2]                         Code : 0301
[17Eh 0382   2]                 Window Count : 0000
[180h 0384   8]                  Window Size : 0000000000000000
[188h 0392   8]               Command Offset : 0000000000000000
[190h 0400   8]                 Command Size : 0000000000000000
[198h 0408   8]                Status Offset : 0000000000000000
[1A0h 0416   8]                  Status Size : 0000000000000000
[1A8h 0424   2]                        Flags : 0000
                            Windows buffered : 0
[1AAh 0426   6]                    Reserved1 : 000000000000

[1B0h 0432   2]                Subtable Type : 0006 [Flush Hint Address]
[1B2h 0434   2]                       Length : 0018

[1B4h 0436   4]                Device Handle : 00000011
[1B8h 0440   2]                   Hint Count : 0001
[1BAh 0442   6]                     Reserved : 000000000000
[1C0h 0448   8]                 Hint Address : 00000000C0101000

[1C8h 0456   2]                Subtable Type : 0007 [Platform Capabilities]
[1CAh 0458   2]                       Length : 0010

[1CCh 0460   1]           Highest Capability : 01
[1CDh 0461   3]                     Reserved : 000000
[1D0h 0464   4] Capabilities (decoded below) : 00000003
                       Cache Flush to NVDIMM : 1
                      Memory Flush to NVDIMM : 1
                            Memory Mirroring : 0
[1D4h 0468   4]                     Reserved : 00000000

Raw Table Data: Length 472 (0x1D8)

    0000: 4E 46 49 54 D8 01 00 00 01 CF 56 4E 56 44 4D 4D  // NFIT......VNVDMM
    0010: 56 4E 56 44 49 4D 4D 20 01 00 00 00 52 56 41 54  // VNVDIMM ....RVAT
    0020: 00 00 00 01 00 00 00 00 00 00 38 00 01 00 02 00  // ..........8.....
    0030: 00 00 00 00 01 00 00 00 79 D3 F0 66 F3 B4 74 40  // ........y..f..t@
    0040: AC 43 0D 33 18 B7 8C DB 00 00 00 00 01 00 00 00  // .C.3............
    0050: 00 00 00 40 00 00 00 00 08 80 00 00 00 00 00 00  // ...@............
    0060: 01 00 30 00 01 00 00 00 00 00 00 00 01 00 01 00  // ..0.............
    0070: 00 00 00 40 00 00 00 00 00 00 00 00 00 00 00 00  // ...@............
    0080: 00 00 00 00 00 00 00 00 00 00 01 00 00 00 00 00  // ................
    0090: 04 00 50 00 01 00 80 89 09 7A 00 18 80 89 09 7A  // ..P......z.....z
    00A0: 00 18 01 A2 26 11 00 00 56 00 00 01 01 03 00 00  // ....&...V.......
    00B0: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  // ................
    00C0: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  // ................
    00D0: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  // ................
    00E0: 06 00 18 00 01 00 00 00 01 00 00 00 00 00 00 00  // ................
    00F0: 00 00 10 C0 00 00 00 00 00 00 38 00 02 00 02 00  // ..........8.....
    0100: 00 00 00 00 02 00 00 00 79 D3 F0 66 F3 B4 74 40  // ........y..f..t@
    0110: AC 43 0D 33 18 B7 8C DB 00 00 00 40 01 00 00 00  // .C.3.......@....
    0120: 00 00 00 40 00 00 00 00 08 80 00 00 00 00 00 00  // ...@............
    0130: 01 00 30 00 11 00 00 00 01 00 00 00 02 00 02 00  // ..0.............
    0140: 00 00 00 40 00 00 00 00 00 00 00 00 00 00 00 00  // ...@............
    0150: 00 00 00 00 00 00 00 00 00 00 01 00 00 00 00 00  // ................
    0160: 04 00 50 00 02 00 80 89 09 7A 00 18 80 89 09 7A  // ..P......z.....z
    0170: 00 18 01 A2 26 11 00 00 56 00 00 02 01 03 00 00  // ....&...V.......
    0180: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  // ................
    0190: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  // ................
    01A0: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  // ................
    01B0: 06 00 18 00 11 00 00 00 01 00 00 00 00 00 00 00  // ................
    01C0: 00 10 10 C0 00 00 00 00 07 00 10 00 01 00 00 00  // ................
    01D0: 03 00 00 00 00 00 00 00                          // ........
