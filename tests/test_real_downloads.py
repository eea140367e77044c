"""Downloads as the real services answer them, against local servers speaking their shapes.

A "Civitai" server on 127.0.0.1 answers ``/api/download/models/{id}`` with a 307 to a
presigned URL on a second, https "storage" server (``localhost``, its own certificate) that
rejects any credential with 400, as Cloudflare R2 does. Hugging Face files come through
huggingface_hub from the local hub fake (in a subprocess: the hub library reads
``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` when imported).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from catalog.card import AdapterCard, AdapterFile
from catalog.settings import Settings
from components.generator.adapters import fetch_card_file
from components.generator.downloads import DownloadError, DownloadPolicy, download, first_host, redirect_host
from fakes.civitai_server import FakeCivitai
from fakes.lora_files import write_hf_repo
from fakes.storage_server import FakeStorage

REPO = Path(__file__).resolve().parents[1]
TOKEN = "civ-real-token-5e8a91c3d7"
PAYLOAD = b"stylus-real-adapter-bytes" * 4000  # 100 KB
SHA = hashlib.sha256(PAYLOAD).hexdigest().upper()
SIGNED = "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=deadbeefcafe0123"


@pytest.fixture
def services():
    with FakeStorage({"/models/1001.safetensors": PAYLOAD}) as storage:
        civitai = FakeCivitai(items=[], downloads={
            1001: storage.url("/models/1001.safetensors" + SIGNED),
            1002: storage.url("/missing.safetensors" + SIGNED),
            1401: "401", 1500: "html"})
        with civitai:
            yield civitai, storage


def _policy(civitai: FakeCivitai, storage: FakeStorage, token: str = TOKEN) -> DownloadPolicy:
    """The test's Civitai runs on 127.0.0.1, so that is the host its token belongs to here."""
    return DownloadPolicy(hosts=["127.0.0.1"], max_mb=10, civitai_token=token,
                          civitai_hosts=("127.0.0.1",), verify=str(storage.ca_file))


def _url(civitai: FakeCivitai, version: int) -> str:
    return f"{civitai.base_url}/api/download/models/{version}"


def test_the_storage_fake_rejects_credentials_like_r2(services):
    _, storage = services
    url = storage.url("/models/1001.safetensors" + SIGNED)
    with httpx.Client(verify=str(storage.ca_file)) as client:
        assert client.get(url).status_code == 200
        assert client.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 400
        assert client.get(url + f"&token={TOKEN}").status_code == 400


def test_civitai_redirect_to_storage_is_followed_with_the_sha256_and_no_credential(tmp_path, services):
    civitai, storage = services
    dest = download(_url(civitai, 1001), tmp_path / "a.safetensors", _policy(civitai, storage), sha256=SHA)
    assert dest.read_bytes() == PAYLOAD
    assert [r.headers.get("authorization") for r in civitai.requests] == [f"Bearer {TOKEN}"]
    assert [r.path for r in storage.requests] == ["/models/1001.safetensors"]
    sent = storage.requests[0]
    assert "authorization" not in sent.headers and "cookie" not in sent.headers and "token" not in sent.query
    assert TOKEN not in json.dumps(sent.headers) + json.dumps(sent.query)


def test_redirect_off_the_allow_list_without_a_sha256_is_refused(tmp_path, services):
    civitai, storage = services
    with pytest.raises(DownloadError, match="only for a file whose SHA256 the card carries") as err:
        download(_url(civitai, 1001), tmp_path / "a.safetensors", _policy(civitai, storage), sha256=None)
    assert "host 'localhost' is not in the download allow-list" in str(err.value)
    assert storage.requests == [] and list(tmp_path.iterdir()) == []


def test_hash_mismatch_after_a_redirect_keeps_nothing(tmp_path, services):
    civitai, storage = services
    with pytest.raises(DownloadError, match="SHA256 mismatch"):
        download(_url(civitai, 1001), tmp_path / "a.safetensors", _policy(civitai, storage), sha256="0" * 64)
    assert len(storage.requests) == 1 and list(tmp_path.iterdir()) == []


def test_messages_never_show_the_presigned_signature(tmp_path, services):
    civitai, storage = services
    with pytest.raises(DownloadError, match="HTTP 404") as err:
        download(_url(civitai, 1002), tmp_path / "a.safetensors", _policy(civitai, storage), sha256=SHA)
    assert "X-Amz-Signature" not in str(err.value) and "deadbeef" not in str(err.value)


@pytest.mark.parametrize("token, said", [
    ("", "this file needs a token: set STYLUS_CIVITAI_TOKEN"),
    (TOKEN, "the token in STYLUS_CIVITAI_TOKEN was not accepted"),
])
def test_gated_file_401_asks_for_the_token_and_saves_nothing(tmp_path, services, token, said):
    civitai, storage = services
    with pytest.raises(DownloadError, match="HTTP 401") as err:
        download(_url(civitai, 1401), tmp_path / "a.safetensors", _policy(civitai, storage, token), sha256=SHA)
    assert said in str(err.value)
    assert list(tmp_path.iterdir()) == [] and storage.requests == []


def test_login_page_instead_of_the_file_is_never_saved(tmp_path, services):
    civitai, storage = services
    with pytest.raises(DownloadError, match="HTML page") as err:
        download(_url(civitai, 1500), tmp_path / "a.safetensors", _policy(civitai, storage, ""), sha256=SHA)
    assert "STYLUS_CIVITAI_TOKEN" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_a_gated_fetch_through_the_card_gives_a_notice_and_no_file(tmp_path, services):
    civitai, _ = services
    settings = Settings(home=tmp_path / "s", download_hosts=["127.0.0.1"])
    card = AdapterCard(id="civitai-1401", source="civitai", name="gated",
                       files=[AdapterFile(name="g.safetensors", sha256=SHA, download_url=_url(civitai, 1401),
                                          primary=True)])
    notices: list[str] = []
    assert fetch_card_file(settings, card, notices) is None
    # 127.0.0.1 is nobody's token host here, so the message is the general one
    assert "HTTP 401: the host refused the download" in notices[0] and notices[0].endswith("skipped")
    assert not [p for p in (tmp_path / "s").rglob("*") if p.is_file() and "loras" in p.parts]


def test_redirect_targets_that_are_never_followed():
    policy = DownloadPolicy(hosts=["civitai.com"], max_mb=10)
    for target, why in [("http://bucket.r2.cloudflarestorage.com/f", "only to https"),
                        ("https://10.0.0.5/f", "redirect to the address '10.0.0.5' refused"),
                        ("https://localhost/f", "redirect to the address 'localhost' refused")]:
        with pytest.raises(DownloadError, match=why):
            redirect_host(target, "civitai.com", policy, SHA)
    assert redirect_host("https://acct.r2.cloudflarestorage.com/f?sig=1", "civitai.com", policy, SHA) \
        == "acct.r2.cloudflarestorage.com"


def test_civitai_red_only_with_allow_nsfw(tmp_path):
    url = "https://civitai.red/api/download/models/77"
    with pytest.raises(DownloadError, match="allow_nsfw=True"):
        first_host(url, DownloadPolicy(hosts=["civitai.com"], max_mb=10))
    assert first_host(url, DownloadPolicy(hosts=["civitai.com"], max_mb=10, allow_nsfw=True)) == "civitai.red"
    card = AdapterCard(id="civitai-77", source="civitai", name="red",
                       files=[AdapterFile(name="r.safetensors", sha256=SHA, download_url=url, primary=True)])
    notices: list[str] = []
    assert fetch_card_file(Settings(home=tmp_path / "s"), card, notices) is None  # refused before any request
    assert "Civitai's domain for NSFW models" in notices[0]


# ---- Hugging Face through huggingface_hub --------------------------------------------------------
_HF_FETCH = """
import json, sys
from catalog.card import AdapterCard
from catalog.settings import Settings
from components.generator.adapters import fetch_card_file
args = json.loads(sys.argv[1])
card = AdapterCard.model_validate(args["card"])
notices = []
source = fetch_card_file(Settings.from_env(home=args["home"], download_hosts=["127.0.0.1"]), card, notices)
print(json.dumps({"path": str(source.path) if source else None, "origin": source.origin if source else None,
                  "notices": notices}))
"""


def _hf_fetch(tmp_path: Path, hub, card: AdapterCard, token: str = "") -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home"),
           "STYLUS_HF_TOKEN": token, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", _HF_FETCH,
                          json.dumps({"card": card.model_dump(mode="json"), "home": str(tmp_path / "s")})],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def _hf_card(repo_dir: Path, sha: str | None) -> AdapterCard:
    return AdapterCard(
        id="hf-someone--pixel-lora-pytorch_lora_weights", source="hf", hf_repo="someone/pixel-lora",
        name="pixel", files=[AdapterFile(
            name="pytorch_lora_weights.safetensors", sha256=sha, primary=True,
            download_url="https://huggingface.co/someone/pixel-lora/resolve/main/pytorch_lora_weights.safetensors")])


def test_hf_files_come_through_huggingface_hub_into_the_cache(tmp_path):
    from fakes.hf_hub_server import FakeHub

    repo = write_hf_repo(tmp_path / "src", weight_names=("pytorch_lora_weights.safetensors",))
    weights = (repo / "pytorch_lora_weights.safetensors").read_bytes()
    card = _hf_card(repo, hashlib.sha256(weights).hexdigest())
    with FakeHub({"someone/pixel-lora": repo}) as hub:
        got = _hf_fetch(tmp_path, hub, card)
        assert got["origin"] == "download" and Path(got["path"]).read_bytes() == weights, got
        assert hub.bytes_sent["pytorch_lora_weights.safetensors"] == len(weights)
        again = _hf_fetch(tmp_path, hub, card)  # the cache answers: nothing sent again
        assert again["origin"] == "cache" and hub.bytes_sent["pytorch_lora_weights.safetensors"] == len(weights)
    assert (tmp_path / "s" / "cache" / "hf").is_dir()  # the hub's own cache lives under the settings cache


def test_hf_file_with_a_wrong_sha256_is_not_kept(tmp_path):
    from fakes.hf_hub_server import FakeHub

    repo = write_hf_repo(tmp_path / "src", weight_names=("pytorch_lora_weights.safetensors",))
    with FakeHub({"someone/pixel-lora": repo}) as hub:
        got = _hf_fetch(tmp_path, hub, _hf_card(repo, "0" * 64))
    assert got["path"] is None and "SHA256 mismatch" in got["notices"][0], got
    assert not any(p.suffix == ".safetensors" for p in (tmp_path / "s").rglob("*") if p.is_file())


def test_hf_token_refused_is_reported_without_the_token(tmp_path):
    from fakes.hf_hub_server import FakeHub

    token = "hf_tok_real_download_7c1d"
    repo = write_hf_repo(tmp_path / "src", weight_names=("pytorch_lora_weights.safetensors",))
    with FakeHub({"someone/pixel-lora": repo}, refuse_token=True) as hub:
        got = _hf_fetch(tmp_path, hub, _hf_card(repo, None), token=token)
    assert got["path"] is None and "HTTP 401: the token in STYLUS_HF_TOKEN was not accepted" in got["notices"][0], got
    assert token not in json.dumps(got)


def test_hf_file_names_cannot_leave_the_repository(tmp_path):
    url = "https://huggingface.co/someone/pixel-lora/resolve/main/..%2F..%2F..%2Fevil.safetensors"
    card = AdapterCard(id="hf-evil", source="hf", hf_repo="someone/pixel-lora", name="evil",
                       files=[AdapterFile(name="evil.safetensors", download_url=url, primary=True)])
    notices: list[str] = []
    assert fetch_card_file(Settings(home=tmp_path / "s"), card, notices) is None  # refused before any request
    assert "file name '../../../evil.safetensors' is not a path inside the repository" in notices[0]
    assert not any(p.is_file() for p in tmp_path.rglob("*"))
