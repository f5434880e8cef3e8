/*
 * RSDP of the default vnvdimm machine, in iasl's data table syntax
 */
[0008]                          Signature : "RSD PTR "
[0001]                           Checksum : 07
[0006]                             Oem ID : "VNVDMM"
[0001]                           Revision : 02
[0004]                       RSDT Address : 00000000
[0004]                             Length : 00000024
[0008]                       XSDT Address : 00000000000E0030
[0001]                  Extended Checksum : 9E
[0003]                           Reserved : 000000
