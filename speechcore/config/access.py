"""AccessArgs: who may call the API, from where, and how much they may send (the `access` section
of the ingress args in serve_config.yaml). Keys come from the config or from environment variables,
so that a deployment can keep them out of files it checks in."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class AccessArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_keys: list[SecretStr] = Field(default_factory=list, description=(
        "Keys a client sends as `Authorization: Bearer <key>`. With none here or in `api_keys_env`, the API is open "
        "(fine on 127.0.0.1, the default bind address)."))
    api_keys_env: str = Field("ALLTALK_API_KEYS", description="Environment variable with more keys, comma-separated.")
    admin_keys: list[SecretStr] = Field(default_factory=list, description=(
        "Keys for the control endpoints (those that change what every user gets or write files on the server, "
        "as each route declares). With none, any API key may use them."))
    admin_keys_env: str = Field("ALLTALK_ADMIN_KEYS", description="Environment variable with more admin keys.")
    admin_paths: list[str] = Field(default_factory=list, description=(
        "More paths that need an admin key, beside the control endpoints (a trailing `/` covers everything "
        "below it)."))
    public_paths: list[str] = Field(default_factory=list, description=(
        "More paths served without a key, beside `/api/ready` (health checks of load balancers) and the web page "
        "`/` (static; it asks for a key before calling the API); a trailing `/` covers everything below it."))
    cors_origins: list[str] = Field(default_factory=lambda: ["*"], description=(
        "Web origins whose pages may call the API from a browser: `*` (the default, as AllTalk) lets browser "
        "clients such as SillyTavern, which run on a page of their own origin, call it; list origins to narrow it "
        "(e.g. `http://127.0.0.1:8000`), or none for same origin only. Keys, not CORS, protect an exposed server."))
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Largest request body accepted (413 beyond).")
    max_job_body_bytes: int = Field(8 << 20, ge=1024, description=(
        "Largest body of `POST /api/jobs` (a long text, as JSON or an uploaded .txt file; 413 beyond)."))
    max_voice_upload_bytes: int = Field(512 << 20, ge=1024, description=(
        "Largest body of a voice upload (`POST /api/voices/...`: a Piper voice is about 60 MB, an RVC index can be "
        "hundreds; 413 beyond). Each file has its own limit too (`voices.max_file_bytes`)."))
    max_discarded_body_bytes: int = Field(64 << 20, ge=0, description=(
        "A refused request's body is read and dropped up to this size before the answer, so that the client, "
        "which sends its whole body first, reads the 413 (or 401, 429) instead of a reset connection; a larger "
        "body is not read."))
    max_narrator_segments: int = Field(200, ge=1, description="Narrator segments one request may split into.")
    max_generations_per_client: int = Field(32, ge=1, description=(
        "Generations one client (API key, or address without keys) may have in flight; more get 429."))

    def keys(self, environ: Mapping[str, str]) -> tuple[frozenset[str], frozenset[str]]:
        """(user keys, admin keys) from the config and the environment; admin keys are user keys too."""
        def gather(listed: list[SecretStr], variable: str) -> frozenset[str]:
            found = [key.get_secret_value() for key in listed]
            found += environ.get(variable, "").split(",")
            return frozenset(key.strip() for key in found if key.strip())

        admin = gather(self.admin_keys, self.admin_keys_env)
        return gather(self.api_keys, self.api_keys_env) | admin, admin
