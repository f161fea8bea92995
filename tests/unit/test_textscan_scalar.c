/* test_textscan_scalar.c: the keyword search's byte-by-byte path, which other machines run. */
#define TEXTSCAN_SCALAR
#define TEXTSCAN_SUITE textscan_scalar
#define TEXTSCAN_WIDE false
#include "textscan_cases.h"
