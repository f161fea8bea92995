/* test_textscan.c: the keyword search as lakeproxy is built: sixteen bytes at a time where the
 * machine can (x86-64 with SSSE3). */
#define TEXTSCAN_SUITE textscan
#define TEXTSCAN_WIDE textscan_wide_cpu()
#include "textscan_cases.h"
