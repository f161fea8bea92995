/* test_textscan.c: the keyword search as lakeproxy is built (SSE2 on x86-64). */
#define TEXTSCAN_SUITE textscan
#include "textscan_cases.h"
