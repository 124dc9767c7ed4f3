"""A real OAuth client (authlib) authenticating with private_key_jwt at our token endpoint.

Usage: private_key_jwt_client.py TOKEN_URL ADVERTISED_TOKEN_ENDPOINT CLIENT_ID KEY_PEM_FILE SUBJECT_TOKEN APP_NOW

Posts an RFC 8693 token exchange to TOKEN_URL twice, signing each client assertion for the
token endpoint our metadata advertises (its `aud`), exactly as authlib documents
PrivateKeyJWT: its defaults (RS256, `exp` an hour after `iat`, a fresh `jti` per request).
The one liberty: authlib's assertion module reads the time from APP_NOW, the test app's fixed
clock, instead of the wall clock. Prints the last JSON answer; exits 0 when both are HTTP 200.
"""
import json
import sys
import types

import authlib.oauth2.rfc7523.assertion as assertion_module
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT

token_url, advertised_endpoint, client_id, key_file, subject_token, app_now = sys.argv[1:7]
assertion_module.time = types.SimpleNamespace(time=lambda: float(app_now))
with open(key_file, encoding="ascii") as pem:
    private_key = pem.read()

session = OAuth2Session(client_id, private_key, token_endpoint_auth_method="private_key_jwt")
session.register_client_auth_method(PrivateKeyJWT(advertised_endpoint))
for _ in range(2):
    token = session.fetch_token(
        token_url,
        grant_type="urn:ietf:params:oauth:grant-type:token-exchange",
        subject_token=subject_token,
        subject_token_type="urn:ietf:params:oauth:token-type:jwt",
        audience="orders",
    )
print(json.dumps(dict(token)))
