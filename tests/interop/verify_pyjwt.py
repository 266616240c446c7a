"""Verify a Countersign access token with PyJWT (Debian's python3-jwt),
fetching the key through the broker's JWKS URL with PyJWKClient.

usage: verify_pyjwt.py JWKS_URL ISSUER AUDIENCE TOKEN
Prints the claims as JSON and exits 0, or prints the error and exits 1.
"""
import json
import sys

import jwt
from jwt import PyJWKClient


def main():
    jwks_url, issuer, audience, token = sys.argv[1:5]
    header = jwt.get_unverified_header(token)
    if header.get("typ") != "at+jwt":
        print("wrong typ: %r" % header.get("typ"))
        return 1
    try:
        key = PyJWKClient(jwks_url).get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=["ES256"],
            audience=audience,
            issuer=issuer,
            options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
        )
    except jwt.PyJWTError as e:
        print("%s: %s" % (type(e).__name__, e))
        return 1
    print(json.dumps(claims))
    return 0


if __name__ == "__main__":
    sys.exit(main())
