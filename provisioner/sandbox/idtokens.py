"""CI/CD ``id_tokens``: RS256 JWTs signed by the sandbox's own key, with GitLab's claims.

The public key is served at ``/oauth/discovery/keys`` and described by
``/.well-known/openid-configuration``, so a verifier (cosign keyless, Vault) can check a token
exactly as it would against GitLab.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from provisioner.sandbox.state import write_secret_file
from provisioner.sandbox.web import Ctx, RouteTable, json_response

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

KEY_FILE = "id_token_key.pem"


routes = RouteTable()


class Signer:
    def __init__(self, data_dir: Path) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        path = data_dir / KEY_FILE
        if path.exists():
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            assert isinstance(loaded, rsa.RSAPrivateKey)
            self.key: RSAPrivateKey = loaded
        else:
            self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            write_secret_file(path, pem.decode())
            os.chmod(path, 0o600)
        self.jwk = self._jwk()
        self.kid = str(self.jwk["kid"])

    def _jwk(self) -> dict[str, Any]:
        from jwt.algorithms import RSAAlgorithm

        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        thumb = json.dumps({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"))
        import base64

        jwk["kid"] = base64.urlsafe_b64encode(hashlib.sha256(thumb.encode()).digest()).decode()
        jwk["kid"] = jwk["kid"].rstrip("=")
        jwk["use"] = "sig"
        jwk["alg"] = "RS256"
        return jwk

    def sign(self, claims: dict[str, Any]) -> str:
        import jwt

        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})


def job_claims(*, issuer: str, audience: Any, job: dict[str, Any], ttl: int) -> dict[str, Any]:
    """GitLab's ``Gitlab::Ci::JwtV2`` claim set for one job."""
    now = int(time.time())
    ref_type = job["ref_type"]
    return {
        "namespace_id": str(job["namespace_id"]),
        "namespace_path": job["namespace_path"],
        "project_id": str(job["project_id"]),
        "project_path": job["project_path"],
        "user_id": str(job["user_id"]),
        "user_login": job["user_login"],
        "user_email": job["user_email"],
        "user_access_level": "maintainer",
        "pipeline_id": str(job["pipeline_id"]),
        "pipeline_source": job["pipeline_source"],
        "job_id": str(job["job_id"]),
        "ref": job["ref"],
        "ref_type": ref_type,
        "ref_path": f"refs/{'tags' if ref_type == 'tag' else 'heads'}/{job['ref']}",
        "ref_protected": "false",
        "runner_id": job["runner_id"],
        "runner_environment": "self-hosted",
        "sha": job["sha"],
        "project_visibility": job["project_visibility"],
        "ci_config_ref_uri": f"{issuer.split('://', 1)[-1]}/{job['project_path']}//"
        f".gitlab-ci.yml@refs/heads/{job['ref']}",
        "ci_config_sha": job["sha"],
        "jti": str(uuid.uuid4()),
        "iat": now,
        "nbf": now - 5,
        "exp": now + ttl,
        "iss": issuer,
        "sub": f"project_path:{job['project_path']}:ref_type:{ref_type}:ref:{job['ref']}",
        "aud": audience,
    }


def _signer(ctx: Ctx) -> Signer:
    signer: Signer = ctx.app.signer
    return signer


@routes.get("/oauth/discovery/keys")
@routes.get("/-/jwks")
def jwks(ctx: Ctx) -> Response:
    return json_response({"keys": [_signer(ctx).jwk]})


@routes.get("/.well-known/openid-configuration")
def openid_configuration(ctx: Ctx) -> Response:
    base = ctx.base_url
    return json_response(
        {
            "issuer": base,
            "authorization_endpoint": f"{base}/oauth/authorize",
            "token_endpoint": f"{base}/oauth/token",
            "revocation_endpoint": f"{base}/oauth/revoke",
            "introspection_endpoint": f"{base}/oauth/introspect",
            "userinfo_endpoint": f"{base}/oauth/userinfo",
            "jwks_uri": f"{base}/oauth/discovery/keys",
            "scopes_supported": ["api", "read_api", "read_user", "openid", "profile", "email"],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "grant_types_supported": [
                "authorization_code",
                "password",
                "client_credentials",
                "refresh_token",
            ],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claim_types_supported": ["normal"],
            "claims_supported": [
                "iss",
                "sub",
                "aud",
                "exp",
                "iat",
                "sub_legacy",
                "name",
                "nickname",
                "preferred_username",
                "email",
                "email_verified",
                "website",
                "profile",
                "picture",
                "groups",
                "groups_direct",
            ],
        }
    )
