/*
 *
 *
 * ACPI Data Table [XSDT]
 *
 * Format: [HexOffset DecimalOffset ByteLength]  FieldName : FieldValue
 */

[000h 0000   4]                    Signature : "XSDT"    [Extended System Description Table]
[004h 0004   4]                 Table Length : 0000004C
[008h 0008   1]                     Revision : 01
[009h 0009   1]                     Checksum : A5
[00Ah 0010   6]                       Oem ID : "VNVDMM"
[010h 0016   8]                 Oem Table ID : "VNVDXSDT"
[018h 0024   4]                 Oem Revision : 00000001
[01Ch 0028   4]              Asl Compiler ID : "RVAT"
[020h 0032   4]        Asl Compiler Revision : 01000000

[024h 0036   8]       ACPI Table Address   0 : 00000000000E0080
[02Ch 0044   8]       ACPI Table Address   1 : 00000000000E01A0
[034h 0052   8]       ACPI Table Address   2 : 00000000000E02F0
[03Ch 0060   8]       ACPI Table Address   3 : 00000000000E0C70
[044h 0068   8]       ACPI Table Address   4 : 00000000000E0E50

Raw Table Data: Length 76 (0x4C)

    0000: 58 53 44 54 4C 00 00 00 01 A5 56 4E 56 44 4D 4D  // XSDTL.....VNVDMM
    0010: 56 4E 56 44 58 53 44 54 01 00 00 00 52 56 41 54  // VNVDXSDT....RVAT
    0020: 00 00 00 01 80 00 0E 00 00 00 00 00 A0 01 0E 00  // ................
    0030: 00 00 00 00 F0 02 0E 00 00 00 00 00 70 0C 0E 00  // ............p...
    0040: 00 00 00 00 50 0E 0E 00 00 00 00 00              // ....P.......
