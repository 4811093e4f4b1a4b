#!/usr/bin/env bash
# Makes a self-signed certificate and key for trying pollchat's TLS listener locally.
#
#   scripts/gen-cert.sh [DIR] [NAME...]
#
# Writes DIR/cert.pem and DIR/key.pem (DIR defaults to ./tls). The certificate is valid for
# localhost, 127.0.0.1 and ::1, plus any NAMEs given (a host name, or an IP address), for 365
# days. It is for local use and tests: clients must be told to trust it (`pollchat-connect
# --tls --ca DIR/cert.pem`, `openssl s_client -CAfile DIR/cert.pem`).
#
# The certificate says CA:FALSE: it is a server's certificate, not an authority. The WebPKI
# rules rustls follows refuse a server certificate marked as a CA, which is what
# `openssl req -x509` makes unless told otherwise. `pollchat-connect --ca` accepts such a
# certificate all the same when it is exactly the one pinned
# (src/bin/pollchat-connect/pinned.rs), but other rustls and webpki clients do not: CA:FALSE
# works with every client.
set -euo pipefail

dir=${1:-tls}
shift || true
if ! command -v openssl >/dev/null; then
  echo "gen-cert.sh: openssl is not installed (apt-get install openssl)" >&2
  exit 1
fi

names="DNS:localhost,IP:127.0.0.1,IP:::1"
for name in "$@"; do
  if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then
    names+=",IP:$name"
  else
    names+=",DNS:$name"
  fi
done

mkdir -p "$dir"
# P-256: small, fast, and accepted by every TLS client.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
  -subj "/CN=localhost" \
  -addext "subjectAltName=$names" \
  -addext "basicConstraints=critical,CA:FALSE" \
  -addext "keyUsage=critical,digitalSignature" \
  -addext "extendedKeyUsage=serverAuth" \
  -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
chmod 600 "$dir/key.pem"
echo "wrote $dir/cert.pem and $dir/key.pem (for: ${names//,/, })"
echo "serve:   cargo run --release -- --tls-cert $dir/cert.pem --tls-key $dir/key.pem"
echo "connect: openssl s_client -quiet -connect 127.0.0.1:7879 -CAfile $dir/cert.pem"
