"""Auditing a generator behind a real Open Inference Protocol server (KServe's model server, in a
subprocess, serving the planted ONNX generator): the same numbers as reading the file, a crash of
the server survived by --resume without paying twice, and one-line errors for bad endpoints."""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import gancheck
from conftest import run_cli

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
pytest.importorskip("kserve")
from kserve_onnx import free_port, start_server, stop_server  # noqa: E402

from gancheck.errors import GancheckError  # noqa: E402
from gancheck.sources.http import InferenceServerGenerator, decode_v2, encode_v2  # noqa: E402

N, ANCHORS = 1200, 64


@pytest.fixture(scope="module")
def server(planted_onnx, tmp_path_factory):
    proc, url = start_server(planted_onnx, tmp_path_factory.mktemp("srv") / "server.log")
    yield url
    stop_server(proc)


def _m(run: Path) -> np.ndarray:
    return pq.read_table(run / "anchors.parquet").column("m").to_numpy()


def test_audit_over_http_equals_the_onnx_file_bitwise(server, planted_onnx, tmp_path, monkeypatch):
    monkeypatch.setenv("GANCHECK_HTTP_TOKEN", "secret-token-123")
    gancheck.audit(server, n=N, anchors=ANCHORS, out=tmp_path / "http", concurrency=3, batch_size=96)
    monkeypatch.delenv("GANCHECK_HTTP_TOKEN")
    gancheck.audit(str(planted_onnx), n=N, anchors=ANCHORS, out=tmp_path / "direct")
    a, b = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("http", "direct"))
    assert a["mccs"]["mean"] == b["mccs"]["mean"] and a["mccs"]["std"] == b["mccs"]["std"]
    assert np.array_equal(_m(tmp_path / "http"), _m(tmp_path / "direct"))
    for f in (tmp_path / "http").rglob("*"):  # the token is read from the environment, never written
        assert not f.is_file() or b"secret-token-123" not in f.read_bytes(), f


def test_binary_and_json_requests_give_the_same_images(server):
    z = np.random.default_rng(0).standard_normal((5, 32)).astype(np.float32)
    binary = InferenceServerGenerator(server, binary="on").request(z)
    plain = InferenceServerGenerator(server, binary="off").request(z)
    assert binary.shape == (5, 3, 32, 32) and np.array_equal(binary, plain)


def test_killed_server_is_resumed_with_the_same_numbers_without_asking_twice(planted_onnx, tmp_path):
    log, port = tmp_path / "server.log", free_port()
    proc, url = start_server(planted_onnx, log, port=port)
    options = dict(n=3000, anchors=ANCHORS, out=tmp_path / "run", shard_size=500, batch_size=50, retries=1, timeout=5)
    args = ["audit", url, "--n", "3000", "--anchors", ANCHORS, "--out", tmp_path / "run", "--shard-size", "500",
            "--batch-size", "50", "--quiet", "--retries", "1", "--timeout", "5"]
    import subprocess, os, time  # noqa: E401
    from conftest import ROOT
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    audit = subprocess.Popen([sys.executable, "-m", "gancheck", *map(str, args)], stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    state = tmp_path / ".run.partial" / "state.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (state.exists() and len(json.loads(state.read_text()).get("shards", {})) >= 3):
        time.sleep(0.05)
    stop_server(proc, hard=True)
    _, err = audit.communicate(timeout=120)
    assert audit.returncode == 2, err
    lines = [line for line in err.strip().splitlines() if "error" in line]
    assert len(lines) == 1 and url in lines[0] and "Traceback" not in err
    proc, url = start_server(planted_onnx, log, port=port)
    try:
        gancheck.audit(url, **options, resume=True)
    finally:
        stop_server(proc)
    gancheck.audit(str(planted_onnx), n=3000, anchors=ANCHORS, out=tmp_path / "direct", shard_size=500)
    assert np.array_equal(_m(tmp_path / "run"), _m(tmp_path / "direct"))
    # Each answered request is one cache file: an index in two files would be a sample paid twice.
    cached = [i for f in (tmp_path / "run" / "cache").rglob("*.npz") for i in np.load(f)["index"]]
    assert len(cached) == len(set(cached)) == 3000 + 64


def test_unknown_model_and_unreachable_host_are_one_line_errors(server, tmp_path):
    wrong = server.rsplit("/", 1)[0] + "/nosuchmodel"
    r = run_cli("audit", wrong, "--n", "100", "--anchors", "8", "--out", tmp_path / "a", "--quiet")
    assert r.returncode == 2 and "404" in r.stderr and "nosuchmodel" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    dead = f"http://127.0.0.1:{free_port()}/v2/models/planted"
    r = run_cli("audit", dead, "--n", "100", "--anchors", "8", "--out", tmp_path / "b", "--quiet", "--retries", "0")
    assert r.returncode == 2 and dead in r.stderr and "refused" in r.stderr and "Traceback" not in r.stderr


class _Refusing(BaseHTTPRequestHandler):
    """A server that wants a token it is never given, or answers too slowly: error paths only."""

    def do_GET(self):
        if "slow" in self.path:
            import time

            time.sleep(3)
        self.send_response(401)
        self.send_header("Content-Length", "12")
        self.end_headers()
        self.wfile.write(b"unauthorized")

    def log_message(self, *args):
        pass


def test_401_and_slow_answers_are_one_line_errors(tmp_path):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}/v2/models"
    try:
        r = run_cli("audit", f"{base}/m", "--n", "100", "--anchors", "8", "--out", tmp_path / "a", "--quiet", "--token-env", "MY_TOKEN")
        assert r.returncode == 2 and "401" in r.stderr and "MY_TOKEN" in r.stderr and len(r.stderr.strip().splitlines()) == 1
        r = run_cli("audit", f"{base}/slow", "--n", "100", "--anchors", "8", "--out", tmp_path / "b", "--quiet", "--timeout", "0.5", "--retries", "0")
        assert r.returncode == 2 and "--timeout 0.5" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    finally:
        httpd.shutdown()


def test_responses_of_the_wrong_shape_or_datatype_are_refused():
    body, head = encode_v2({"z": (np.zeros((2, 4), np.float32), "FP32")}, ["image"], binary=True)
    assert int(head["Inference-Header-Content-Length"]) < len(body)
    answer = json.dumps({"outputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]}]}).encode()
    with pytest.raises(GancheckError, match="datatype 'BYTES'"):
        decode_v2(answer, {}, "image", "http://x/v2/models/m")
    answer = json.dumps({"outputs": [{"name": "image", "datatype": "FP32", "shape": [2, 3, 4, 4], "data": [0.0] * 5}]}).encode()
    with pytest.raises(GancheckError, match="holds 5 values"):
        decode_v2(answer, {}, "image", "http://x/v2/models/m")


TOKEN = "in-house-token-42"


@pytest.fixture(scope="module")
def json_service(planted_onnx):
    """The in-house JSON service, which wants the bearer token TOKEN."""
    import os
    import subprocess
    import time
    import urllib.request

    port = free_port()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "fixtures" / "json_service.py"), str(planted_onnx), str(port)],
                            env=dict(os.environ, JSON_SERVICE_TOKEN=TOKEN))
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(base, timeout=1)
        except urllib.error.HTTPError:
            break  # it answers (GET is not served)
        except OSError:
            time.sleep(0.1)
    yield base
    proc.kill()
    proc.wait()


def _template(tmp_path, name, **template) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(template))
    return path


def test_json_service_with_a_template_equals_the_onnx_file(json_service, planted_onnx, tmp_path, monkeypatch):
    t = _template(tmp_path, "arrays", body={"z": "$latents"}, images="result.images", latent_shape=[32])
    monkeypatch.setenv("SERVICE_TOKEN", TOKEN)
    gancheck.audit(f"{json_service}/generate", request_template=t, n=400, anchors=32, out=tmp_path / "json", concurrency=2,
                   batch_size=100, token_env="SERVICE_TOKEN")
    monkeypatch.delenv("SERVICE_TOKEN")
    gancheck.audit(str(planted_onnx), n=400, anchors=32, out=tmp_path / "onnx")
    assert np.array_equal(_m(tmp_path / "json"), _m(tmp_path / "onnx"))
    assert not any(f.is_file() and TOKEN.encode() in f.read_bytes() for f in (tmp_path / "json").rglob("*"))
    png = _template(tmp_path, "png", body={"z": "$latents"}, images="images", latent_shape=[32], image_encoding="png_base64")
    monkeypatch.setenv("GANCHECK_HTTP_TOKEN", TOKEN)
    gancheck.audit(f"{json_service}/png", request_template=png, n=400, anchors=32, out=tmp_path / "png")
    worst = json.loads((tmp_path / "png" / "report.json").read_text())["worst_mode"]["neighbor_fraction"]
    assert 0.02 < worst < 0.10  # 8-bit PNGs still show the planted 5% mode


def test_seed_only_service_is_a_diagnosis_with_its_seed_range_recorded(json_service, tmp_path, monkeypatch):
    t = _template(tmp_path, "seeds", body={"seeds": "$seeds", "n": "$batch"}, images="images", seed_offset=1000)
    monkeypatch.setenv("GANCHECK_HTTP_TOKEN", TOKEN)
    gancheck.audit(f"{json_service}/seeded", request_template=t, n=400, anchors=100, out=tmp_path / "s")
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert "1000 + sample index" in json.dumps(manifest)
    report = json.loads((tmp_path / "s" / "report.json").read_text())
    assert 0.02 < report["worst_mode"]["neighbor_fraction"] < 0.10
    with pytest.raises(GancheckError, match="calibration needs a latent generator"):
        gancheck.calibrate(tmp_path / "s", out=tmp_path / "cal.safetensors")


def test_bad_templates_are_one_line_errors(json_service, tmp_path):
    r = run_cli("audit", f"{json_service}/generate", "--out", tmp_path / "a", "--quiet")
    assert r.returncode == 2 and "--request-template" in r.stderr
    t = _template(tmp_path, "nopath", body={"z": "$latents"}, images="result.pictures", latent_shape=[32])
    r = run_cli("audit", f"{json_service}/generate", "--request-template", t, "--n", "100", "--anchors", "8", "--out", tmp_path / "b", "--quiet",
                env={"GANCHECK_HTTP_TOKEN": TOKEN})
    assert r.returncode == 2 and "result.pictures" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_token_comes_from_the_environment_and_the_rate_limit_holds(json_service, tmp_path, monkeypatch):
    import time

    from gancheck.sources.http import JsonServiceGenerator

    t = _template(tmp_path, "arrays", body={"z": "$latents"}, images="result.images", latent_shape=[32])
    monkeypatch.setenv("GANCHECK_HTTP_TOKEN", "wrong")
    with pytest.raises(GancheckError, match="401") as refused:
        gancheck.audit(f"{json_service}/generate", request_template=t, n=100, anchors=8, out=tmp_path / "a")
    assert "GANCHECK_HTTP_TOKEN" in str(refused.value)
    monkeypatch.setenv("GANCHECK_HTTP_TOKEN", TOKEN)
    source = JsonServiceGenerator(f"{json_service}/generate", request_template=str(t), max_rps=10, concurrency=4, batch_size=2)
    monkeypatch.delenv("GANCHECK_HTTP_TOKEN")
    source.prepare(0)
    start = time.perf_counter()
    source.images(np.arange(12))  # 6 requests of 2, 4 threads, at most 10 per second
    assert time.perf_counter() - start >= 0.45


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with the cryptography package."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


def test_https_service_is_verified_with_the_given_ca(planted_onnx, tmp_path):
    import subprocess
    import time

    pytest.importorskip("cryptography")
    cert, key = _self_signed(tmp_path)
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "fixtures" / "json_service.py"), str(planted_onnx), str(port),
                             str(cert), str(key)])
    t = _template(tmp_path, "arrays", body={"z": "$latents"}, images="result.images", latent_shape=[32])
    url = f"https://127.0.0.1:{port}/generate"
    try:
        time.sleep(3)  # the service loads its model
        gancheck.audit(url, request_template=t, n=200, anchors=16, out=tmp_path / "tls", ca_file=cert)
        assert (tmp_path / "tls" / "report.json").is_file()
        r = run_cli("audit", url, "--request-template", t, "--n", "200", "--anchors", "16", "--out", tmp_path / "untrusted", "--quiet")
        assert r.returncode == 2 and "TLS" in r.stderr and "--ca-file" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    finally:
        proc.kill()
        proc.wait()


def test_conditional_inputs_over_http_equal_the_onnx_file(tmp_path):
    """A fixed class (what a sweep sends) and a class drawn per sample, over the protocol."""
    from conditional import build_conditional_generator

    from gancheck.sources import load_generator

    model = build_conditional_generator(tmp_path / "cond.onnx")
    proc, url = start_server(model, tmp_path / "server.log", name="cond")
    try:
        for label in ("0,1,0", "random:onehot:3"):
            served = load_generator(url, inputs={"label": label}, concurrency=2, batch_size=16)
            local = load_generator(str(model), inputs={"label": label}, batch_size=16)
            for source in (served, local):
                source.prepare(3)
            idx = np.arange(40, dtype=np.int64)
            assert np.array_equal(served.images(idx), local.images(idx)), label
    finally:
        stop_server(proc)


class _Flaky(BaseHTTPRequestHandler):
    """Answers 503 twice, then 200: the client must retry with backoff and succeed."""

    calls = 0

    def do_GET(self):
        type(self).calls += 1
        ok = type(self).calls > 2
        body = b'{"ok": true}' if ok else b"busy"
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_5xx_answers_are_retried_with_backoff():
    import time

    from gancheck.sources.http import Endpoint

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/v2/models/m"
    try:
        start = time.perf_counter()
        status, _, data = Endpoint(url, retries=3).call("GET", url)
        assert status == 200 and json.loads(data) == {"ok": True} and _Flaky.calls == 3
        assert time.perf_counter() - start >= 0.6  # backoff 0.2 s, then 0.4 s
        _Flaky.calls = -10
        with pytest.raises(GancheckError, match="HTTP 503.*after 2 tries"):
            Endpoint(url, retries=1).call("GET", url)
    finally:
        httpd.shutdown()
