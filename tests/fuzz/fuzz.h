/* fuzz.h: lakeproxy's fuzz targets. Each takes arbitrary bytes and drives one decoder of
 * hostile input; it must never crash, hang, leak or read out of bounds (libFuzzer with ASan
 * and UBSan: `make fuzz`). The same functions replay the committed corpus under tests/fuzz/
 * in `make check` (test_fuzz_corpus.c), so every input that once crashed stays a test. */
#ifndef LAKEPROXY_FUZZ_H
#define LAKEPROXY_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* A client's byte stream after login: framing, and every message parser a client reaches
 * (Query and Parse text through the RLS and masking guards, Bind, Describe, Close, Execute,
 * DEALLOCATE). */
int fuzz_client_stream(const uint8_t *data, size_t size);
/* A server's byte stream: framing and every backend message parser (ErrorResponse,
 * ParameterStatus, BackendKeyData, ReadyForQuery, Authentication, SASL). */
int fuzz_server_stream(const uint8_t *data, size_t size);
/* A startup packet (length word first). */
int fuzz_startup(const uint8_t *data, size_t size);
/* A YAML configuration file. */
int fuzz_config(const uint8_t *data, size_t size);
/* The masking rewriter: a plan from the first bytes, then a DataRow body; and a masking
 * function spec. */
int fuzz_mask(const uint8_t *data, size_t size);

#include "relay.h"
/* Pumps data through the relay with inspector fn, all buffered and in reads judged before
 * they are buffered; aborts when the two forward different bytes or end differently. */
void fuzz_pump(const uint8_t *data, size_t size, relay_inspect_fn fn);

#endif
