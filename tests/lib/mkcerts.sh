#!/usr/bin/env bash
# mkcerts.sh DIR: a test CA and a certificate for localhost / 127.0.0.1 signed by it.
# Writes DIR/ca.crt, DIR/server.crt, DIR/server.key (and client certificates, below). Made at
# test time; never committed.
set -euo pipefail
dir=$1
mkdir -p "$dir"
cd "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=lakeproxy test CA" \
    -keyout ca.key -out ca.crt >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout server.key -out server.csr >/dev/null 2>&1
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > ext.cnf
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
    -extfile ext.cnf -out server.crt >/dev/null 2>&1
chmod 600 server.key ca.key
# Client certificates (test_rls.c): client.crt/key signed by the test CA (CN=t7, O=Acme,
# OU=7), and rogue.crt/key with the same subject signed by a CA lakeproxy does not trust.
printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' > client.cnf
openssl req -newkey rsa:2048 -nodes -subj "/CN=t7/O=Acme/OU=7" \
    -keyout client.key -out client.csr >/dev/null 2>&1
openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
    -extfile client.cnf -out client.crt >/dev/null 2>&1
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=rogue CA" \
    -keyout rogue-ca.key -out rogue-ca.crt >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj "/CN=t7/O=Acme/OU=7" \
    -keyout rogue.key -out rogue.csr >/dev/null 2>&1
openssl x509 -req -in rogue.csr -CA rogue-ca.crt -CAkey rogue-ca.key -CAcreateserial -days 2 \
    -extfile client.cnf -out rogue.crt >/dev/null 2>&1
chmod 600 client.key rogue.key rogue-ca.key
# revoked.crt/key: the same subject, signed by the test CA and then revoked in ca.crl (the
# CRL of listen.tls.client_crl, test_rls.c)
openssl req -newkey rsa:2048 -nodes -subj "/CN=t7/O=Acme/OU=7" \
    -keyout revoked.key -out revoked.csr >/dev/null 2>&1
openssl x509 -req -in revoked.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
    -extfile client.cnf -out revoked.crt >/dev/null 2>&1
chmod 600 revoked.key
: >index.txt
echo 01 >crlnumber
printf '[ca]\ndefault_ca = test\n[test]\ndatabase = index.txt\ncrlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 2\n' >crl.cnf
openssl ca -config crl.cnf -keyfile ca.key -cert ca.crt -revoke revoked.crt >/dev/null 2>&1
openssl ca -config crl.cnf -keyfile ca.key -cert ca.crt -gencrl -out ca.crl >/dev/null 2>&1
