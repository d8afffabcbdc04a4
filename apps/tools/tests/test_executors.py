"""The http and python executors against real targets on 127.0.0.1, and the SSRF guard."""

from __future__ import annotations

import pytest

from apps.tools.executors.http import TargetRefused, check_target
from apps.tools.tests.conftest import call, flushed_calls, run

pytestmark = pytest.mark.django_db(transaction=True)


def test_http_posts_args_and_context_with_secret_headers(make_tool, http_target, allow_local, target_requests):
    make_tool("t.echo", target=f"{http_target}/echo", secret_headers={"X-Api-Key": "sk-test-1234567"})
    outcome = call("t.echo", context={"channel_id": "c1", "agent_id": "spoofed"}, request_id="req-abc")
    assert outcome.ok, outcome
    sent = outcome.result["echo"]
    assert sent["args"] == {"microdao_id": "microdao:7"}
    assert sent["context"] == {
        "channel_id": "c1",
        "agent_id": "agent:sofia",
        "microdao_id": "microdao:7",
        "request_id": "req-abc",
        "tool_id": "t.echo",
    }
    headers = {k.lower(): v for k, v in target_requests[-1]["headers"].items()}
    assert headers["x-api-key"] == "sk-test-1234567"
    assert headers["x-request-id"] == "req-abc"
    assert headers["host"] == http_target.removeprefix("http://")
    assert outcome.request_id == "req-abc" and outcome.latency_ms > 0


def test_connection_refused_is_not_a_timeout(make_tool, closed_port, allow_local):
    make_tool("t.down", target=f"http://127.0.0.1:{closed_port}/x")
    outcome = call("t.down")
    assert not outcome.ok
    assert outcome.error_type == "connect_error" and outcome.status == "error"
    assert outcome.error.startswith(f"could not connect to 127.0.0.1:{closed_port}")


def test_slow_target_times_out_with_its_own_timeout(make_tool, http_target, allow_local):
    make_tool("t.slow", target=f"{http_target}/slow/2", timeout=0.3)
    outcome = call("t.slow")
    assert outcome.error_type == "timeout" and outcome.status == "timeout"
    assert "accepted the connection but did not answer within 0.3 s" in outcome.error


@pytest.mark.parametrize("path", ["/huge", "/huge-chunked"])
def test_response_size_cap(make_tool, http_target, allow_local, settings, path):
    settings.TOOLS_HTTP_MAX_RESPONSE_BYTES = 100_000
    make_tool("t.huge", target=f"{http_target}{path}")
    outcome = call("t.huge")
    assert outcome.error_type == "response_too_large"
    assert "more than 100000 bytes" in outcome.error


def test_non_2xx_is_a_failed_result_with_status_and_short_body(make_tool, http_target, allow_local):
    make_tool("t.fail", target=f"{http_target}/fail", output_schema={"type": "array"})
    outcome = call("t.fail")
    assert not outcome.ok and outcome.error_type == "upstream_status"
    assert outcome.details == {"status": 503, "body": "database is down for maintenance"}
    # The output schema is not checked on a failed result: the real error is kept.
    assert "HTTP 503: database is down" in outcome.error


def test_not_json_and_empty_bodies(make_tool, http_target, allow_local):
    make_tool("t.html", target=f"{http_target}/not-json")
    make_tool("t.empty", target=f"{http_target}/empty")
    html = call("t.html")
    assert html.error_type == "invalid_response" and "<html>hello</html>" in html.error
    empty = call("t.empty")
    assert empty.ok and empty.result is None


def test_wrong_shape_fails_output_schema_with_paths(make_tool, http_target, allow_local):
    make_tool("t.shape", target=f"{http_target}/wrong-shape", output_schema={"type": "array", "items": {"type": "object"}})
    outcome = call("t.shape")
    assert outcome.status == "invalid_output" and outcome.error_type == "invalid_output"
    assert outcome.details == [{"path": "$", "message": "{'not': 'a list'} is not of type 'array'"}]
    make_tool("t.ok", target=f"{http_target}/projects", output_schema={"type": "array", "items": {"type": "object"}})
    assert call("t.ok").result == [{"id": "p1", "name": "One"}]


def test_redirect_to_private_address_is_refused(make_tool, http_target, allow_local):
    for to in ("http://10.0.0.1/x", "http://169.254.169.254/latest/meta-data", "http://localhost:1/x"):
        make_tool(f"t.redir{len(to)}", target=f"{http_target}/redirect?to={to}")
        outcome = call(f"t.redir{len(to)}")
        assert outcome.error_type == "target_not_allowed", outcome
        assert "not in TOOLS_HTTP_ALLOWED_HOSTS" in outcome.error


def test_allowed_redirects_are_followed_and_rechecked(make_tool, http_target, allow_local, target_requests):
    make_tool("t.redir-ok", target=f"{http_target}/redirect?to=/echo")
    outcome = call("t.redir-ok")
    assert outcome.ok and outcome.result["echo"]["args"] == {"microdao_id": "microdao:7"}  # 307 keeps the POST body
    make_tool("t.redir303", target=f"{http_target}/redirect303?to=/projects")
    assert call("t.redir303").result == [{"id": "p1", "name": "One"}]
    make_tool("t.loop", target=f"{http_target}/loop")
    assert "more than 3 redirects" in call("t.loop").error


def test_host_not_in_allowlist_is_refused_before_connecting(make_tool, http_target, settings):
    settings.TOOLS_HTTP_ALLOWED_HOSTS = ["projects-service:8000"]
    make_tool("t.notlisted", target=f"{http_target}/echo")
    outcome = call("t.notlisted")
    assert outcome.error_type == "target_not_allowed"


@pytest.mark.parametrize(
    ("allowed", "url", "fragment"),
    [
        (["*"], "http://127.0.0.1:8000/x", "internal address 127.0.0.1"),
        (["*"], "http://localhost:8000/x", "internal address"),
        (["*.internal.test"], "http://10.1.2.3/x", "not in TOOLS_HTTP_ALLOWED_HOSTS"),
        (["*"], "http://[::1]:80/x", "internal address ::1"),
        (["*"], "http://[::ffff:127.0.0.1]/x", "internal address"),
        (["169.254.169.254"], "http://169.254.169.254/x", None),
        (["metadata.test"], "http://metadata.test/x", "could not resolve"),
        (["127.0.0.1:9000"], "http://127.0.0.1:8000/x", "not in TOOLS_HTTP_ALLOWED_HOSTS"),
        (["*"], "file:///etc/passwd", "scheme 'file'"),
        (["*"], "http://user:pw@example.com/x", "credentials"),
    ],
)
def test_ssrf_rules(settings, allowed, url, fragment):
    settings.TOOLS_HTTP_ALLOWED_HOSTS = allowed
    if fragment is None:
        assert run(check_target(url)).ip == "169.254.169.254"  # listed by IP: the operator said so
        return
    with pytest.raises(TargetRefused) as exc:
        run(check_target(url))
    assert fragment in str(exc.value)


def test_exact_host_entry_allows_internal_and_pins_the_checked_ip(settings):
    settings.TOOLS_HTTP_ALLOWED_HOSTS = ["localhost"]
    checked = run(check_target("http://localhost:8123/x"))
    assert checked.ip in ("127.0.0.1", "::1") and checked.host == "localhost"


def test_metadata_address_needs_the_ip_listed(settings):
    settings.TOOLS_HTTP_ALLOWED_HOSTS = ["169.254.169.254.nip.test", "*"]
    with pytest.raises(TargetRefused, match="metadata address 169.254.169.254"):
        run(check_target("http://169.254.169.254/latest"))


# --- python executor ------------------------------------------------------------------------


def test_python_tool_failures_keep_their_message(make_tool):
    from apps.tools.executors.python import tool_function

    @tool_function("tests.boom")
    def boom(args, ctx):
        raise KeyError("missing thing")

    @tool_function("tests.sleepy")
    async def sleepy(args, ctx):
        import asyncio

        await asyncio.sleep(5)

    make_tool("t.boom", executor="python", target="tests.boom")
    make_tool("t.sleepy", executor="python", target="tests.sleepy", timeout=0.2)
    boom_out = call("t.boom")
    assert boom_out.error_type == "execution_error" and boom_out.error == "KeyError: 'missing thing'"
    sleepy_out = call("t.sleepy")
    assert sleepy_out.status == "timeout" and "did not finish within 0.2 s" in sleepy_out.error
    assert [c.status for c in flushed_calls()] == ["error", "timeout"]


def test_a_host_name_target_connects_to_the_checked_address(make_tool, http_target, settings, target_requests):
    port = http_target.rsplit(":", 1)[1]
    settings.TOOLS_HTTP_ALLOWED_HOSTS = [f"localhost:{port}"]
    make_tool("t.byname", target=f"http://localhost:{port}/echo")
    outcome = call("t.byname")
    assert outcome.ok, outcome
    assert {k.lower(): v for k, v in target_requests[-1]["headers"].items()}["host"] == f"localhost:{port}"


def test_the_client_never_connects_to_an_unchecked_host(http_target):
    """Even a request that skipped check_target cannot open a connection."""
    import httpx

    from apps.tools.executors.http import _client

    async def direct():
        return await _client().post(f"{http_target}/echo", json={})

    with pytest.raises(httpx.ConnectError, match="no checked address"):
        run(direct())


@pytest.fixture
def https_target(tmp_path):
    """An HTTPS server on 127.0.0.1 with a self-signed certificate for `localhost`."""
    import datetime
    import ssl
    import threading

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from apps.tools.tests.conftest import _QuietServer, _TargetHandler

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = _QuietServer(("127.0.0.1", 0), _TargetHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], str(cert_path)
    server.shutdown()


@pytest.fixture
def fresh_http_client():
    """Drops the pooled client so one built with the test's TLS settings is used."""
    from apps.tools.executors import http

    http._clients.clear()
    yield
    http._clients.clear()


def test_https_target_by_name_verifies_the_certificate(make_tool, https_target, settings, fresh_http_client):
    port, ca = https_target
    settings.TOOLS_HTTP_ALLOWED_HOSTS = [f"localhost:{port}"]
    make_tool("t.tls", target=f"https://localhost:{port}/echo")
    untrusted = call("t.tls")
    assert untrusted.error_type == "connect_error" and "CERTIFICATE_VERIFY_FAILED" in untrusted.error

    from apps.tools.executors import http

    http._clients.clear()
    settings.TOOLS_HTTP_CA_BUNDLE = ca
    outcome = call("t.tls")
    assert outcome.ok, outcome
    assert outcome.result["echo"]["args"] == {"microdao_id": "microdao:7"}


def test_secrets_stay_with_the_tools_own_origin_on_redirects(make_tool, http_target, settings, target_requests):
    # localhost and 127.0.0.1 are the same server but different origins.
    settings.TOOLS_HTTP_ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    port = http_target.rsplit(":", 1)[1]
    make_tool("t.same-origin", target=f"{http_target}/redirect?to=/echo", secret_headers={"X-Api-Key": "sk-same-1234567"})
    assert call("t.same-origin").ok
    same = {k.lower(): v for k, v in target_requests[-1]["headers"].items()}
    assert same["x-api-key"] == "sk-same-1234567"

    make_tool(
        "t.cross-origin",
        target=f"{http_target}/redirect?to=http://localhost:{port}/echo",
        secret_headers={"X-Api-Key": "sk-cross-1234567"},
    )
    outcome = call("t.cross-origin")
    assert outcome.ok, outcome
    last = {k.lower(): v for k, v in target_requests[-1]["headers"].items()}
    assert last["host"] == f"localhost:{port}"
    assert "x-api-key" not in last
    first = {k.lower(): v for k, v in target_requests[-2]["headers"].items()}
    assert first["x-api-key"] == "sk-cross-1234567"
