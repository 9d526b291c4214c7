#!/usr/bin/env python3
"""Independent referee for confab-relay's Web Push (run by the relay's integration tests).

Reads a JSON case file (argv[1]) with the pushes a fake push service captured:
  {"ua_private": b64url (32-byte P-256 scalar), "auth": b64url, "pushes": [{"endpoint": ..., "headers": {...},
   "body": b64url}]}
For each push it decrypts the body with PyPI's `http_ece` (RFC 8188/8291 aes128gcm), verifies the
VAPID Authorization header with PyPI's `py-vapid` (RFC 8292) and checks the JWT claims (`aud` is
the endpoint's origin with its port, `exp` within 24 hours, `sub` present). Prints one JSON
object with the decrypted plaintexts; exits non-zero on any failure.
"""
import base64
import json
import sys
import time
from urllib.parse import urlsplit

import http_ece
import py_vapid
from cryptography.hazmat.primitives.asymmetric import ec


def b64d(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def origin(endpoint):
    parts = urlsplit(endpoint)
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname
    if ":" in host:
        host = "[" + host + "]"
    if parts.port is None or parts.port == default:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{parts.port}"


def main():
    case = json.load(open(sys.argv[1]))
    scalar = int.from_bytes(b64d(case["ua_private"]), "big")
    private_key = ec.derive_private_key(scalar, ec.SECP256R1())
    auth = b64d(case["auth"])
    results = []
    for push in case["pushes"]:
        headers = {k.lower(): v for k, v in push["headers"].items()}
        assert headers.get("content-encoding") == "aes128gcm", headers
        plaintext = http_ece.decrypt(
            b64d(push["body"]), private_key=private_key, auth_secret=auth, version="aes128gcm"
        )
        authorization = headers["authorization"]
        assert py_vapid.Vapid02.verify(authorization), "VAPID signature does not verify"
        params = dict(p.split("=", 1) for p in authorization.split(" ", 1)[1].split(","))
        token = params["t"].strip()
        header, claims, _ = token.split(".")
        assert json.loads(b64d(header)) == {"typ": "JWT", "alg": "ES256"}
        claims = json.loads(b64d(claims))
        want = origin(push["endpoint"])
        assert claims["aud"] == want, f"aud {claims['aud']!r} != {want!r}"
        now = time.time()
        assert now < claims["exp"] <= now + 24 * 3600 + 60, claims
        assert claims["sub"].startswith(("mailto:", "https:")), claims
        results.append(
            {
                "plaintext": plaintext.decode("utf-8"),
                "aud": claims["aud"],
                "ttl": headers.get("ttl"),
                "urgency": headers.get("urgency"),
                "topic": headers.get("topic"),
            }
        )
    print(json.dumps({"ok": True, "pushes": results}))


if __name__ == "__main__":
    main()
