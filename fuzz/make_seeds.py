#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/ (committed; run again after changing a source).

Seeds, per target (each fuzz_targets/*.rs says what its leading bytes mean):
- http_request, http_response, chunked: every byte-string literal of tests/http_spec_*.rs that
  is a request, a response or a chunked body (valid and tricky: smuggling attempts, obs-fold,
  bare CR/LF, bad chunk sizes), each with the flags and cut bytes its target expects;
- config: examples/*.toml, packaging/lbproxy.toml and the ```toml blocks of docs/config.md, plus
  an [env.NAME] overlay with ${VAR}s;
- sni: ClientHellos made by OpenSSL (Python's ssl over memory BIOs: no network), with and
  without a server name, TLS 1.2 only, and fragmented over several records.
"""
import hashlib
import pathlib
import re
import ssl

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"DELETE ", b"OPTIONS ", b"CONNECT ",
           b"PATCH ", b"TRACE ", b"get ", b"FOO ")


def rust_byte_strings(text):
    """The b"..." literals of a Rust source (escapes decoded, line continuations joined)."""
    for match in re.finditer(rb'b"((?:[^"\\]|\\.|\\\n)*)"', text, re.S):
        raw, out, i = match.group(1), bytearray(), 0
        while i < len(raw):
            c = raw[i:i + 1]
            if c != b"\\":
                out += c
                i += 1
                continue
            e = raw[i + 1:i + 2]
            if e == b"x":
                out.append(int(raw[i + 2:i + 4], 16))
                i += 4
            elif e == b"\n":
                i += 2
                while i < len(raw) and raw[i:i + 1] in (b" ", b"\t", b"\n"):
                    i += 1
            else:
                out += {b"r": b"\r", b"n": b"\n", b"t": b"\t", b"0": b"\0", b"\\": b"\\",
                        b'"': b'"', b"'": b"'"}.get(e, e)
                i += 2
        yield bytes(out)


def write(target, data):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


def http_seeds():
    literals = set()
    for source in sorted((ROOT / "tests").glob("http_spec_*.rs")):
        literals.update(rust_byte_strings(source.read_bytes()))
    for literal in sorted(literals):
        if literal.startswith(METHODS):
            # Default limits, keep-alive, the cut in the middle; and small limits, IPv6, https.
            write("http_request", bytes([0b0010, 128]) + literal)
            write("http_request", bytes([0b1101, 200]) + literal)
            head_end = literal.find(b"\r\n\r\n")
            body = literal[head_end + 4:] if head_end >= 0 else b""
            if b"chunked" in literal.lower() and body[:1].isalnum():
                write("chunked", bytes([0b000, ]) + body)
        elif literal.startswith(b"HTTP/"):
            # GET from an HTTP/1.1 client kept alive; HEAD from an HTTP/1.0 client.
            write("http_response", bytes([0b01000, 128]) + literal)
            write("http_response", bytes([0b00101, 64]) + literal)
            head_end = literal.find(b"\r\n\r\n")
            body = literal[head_end + 4:] if head_end >= 0 else b""
            if b"chunked" in literal.lower() and body[:1].isalnum():
                write("chunked", bytes([0b10]) + body)
        elif re.match(rb"^[0-9a-fA-F +\-]{1,20}[;\r\n]", literal) and b"\r\n" in literal:
            # A chunked body: three cuts, trailers kept; and payload only, no cuts.
            write("chunked", bytes([0b01100, 40, 120, 200]) + literal)
            write("chunked", bytes([0b00010]) + literal)


def config_seeds():
    sources = sorted((ROOT / "examples").glob("*.toml")) + [ROOT / "packaging" / "lbproxy.toml"]
    for source in sources:
        write("config", source.read_bytes())
    docs = (ROOT / "docs" / "config.md").read_text()
    for block in re.findall(r"```toml\n(.*?)```", docs, re.S):
        write("config", block.encode())
    write("config", b"""[listener.http]
address = "${HOST}:8080"
upstream = "api"

[upstream.api]
backends = ["127.0.0.1:${PORT}", "${API2:-127.0.0.1:8002}"]
balance = "round_robin"

[env.prod.listener.http]
address = "0.0.0.0:80"

[env.prod.upstream.api]
backends = ["10.0.0.5:80"]
""")


def client_hello(server_name, maximum=None, alpn=None):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if maximum:
        context.maximum_version = maximum
    if alpn:
        context.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    connection = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    try:
        connection.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def fragment(hello, size):
    """The same handshake message over records of at most `size` bytes."""
    message, out = hello[5:], b""
    for i in range(0, len(message), size):
        chunk = message[i:i + size]
        out += bytes([22, 3, 1]) + len(chunk).to_bytes(2, "big") + chunk
    return out


def sni_seeds():
    hellos = [
        client_hello("api.example.com"),
        client_hello("API.Example.COM", alpn=["h2", "http/1.1"]),
        client_hello("legacy.example.com", maximum=ssl.TLSVersion.TLSv1_2),
        client_hello(None),
    ]
    for hello in hellos:
        write("sni", hello)
    write("sni", fragment(hellos[0], 100))
    write("sni", fragment(hellos[0], 7))
    write("sni", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    write("sni", bytes([22, 3, 3, 0, 4, 2, 0, 0, 0]))


if __name__ == "__main__":
    http_seeds()
    config_seeds()
    sni_seeds()
    for folder in sorted(CORPUS.iterdir()):
        files = list(folder.iterdir())
        print(f"{folder.name}: {len(files)} seeds, {sum(f.stat().st_size for f in files)} bytes")
