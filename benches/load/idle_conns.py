#!/usr/bin/env python3
"""Opens N TLS connections, sends one GET on each (so each is a used keep-alive connection, as an
IdP's pool would be), then prints `READY <n>` and holds them all idle for --hold seconds (the
benchmark ends it sooner). The load benchmark reads the server's RSS while they are held.

    idle_conns.py --port P --ca CA --path /SCIM/v2/Users/1 --token T [--n 1000] [--hold 30]
"""
import argparse
import asyncio
import ssl
import sys


async def one(args, ctx, sem, held):
    async with sem:
        reader, writer = await asyncio.open_connection(
            args.host, args.port, ssl=ctx, server_hostname=args.sni
        )
        writer.write(
            (
                f"GET {args.path} HTTP/1.1\r\nHost: {args.sni}:{args.port}\r\n"
                f"Authorization: Bearer {args.token}\r\nAccept: application/scim+json\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:] if line)
        }
        if b"content-length" in headers:
            await reader.readexactly(int(headers[b"content-length"]))
        elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            buf = b""
            while not buf.endswith(b"0\r\n\r\n"):
                buf += await reader.read(65536)
        if status != 200:
            raise RuntimeError(f"status {status}")
        held.append(writer)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--sni", default="localhost")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--hold", type=float, default=30)
    args = p.parse_args()
    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.set_alpn_protocols(["http/1.1"])
    sem = asyncio.Semaphore(64)
    held = []
    results = await asyncio.gather(
        *(one(args, ctx, sem, held) for _ in range(args.n)), return_exceptions=True
    )
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        print(f"{len(failed)} connections failed, first: {failed[0]!r}", file=sys.stderr)
    print(f"READY {len(held)}", flush=True)
    # Held until the benchmark, having read the server's RSS, ends this process (or --hold passes).
    await asyncio.sleep(args.hold)
    for w in held:
        w.close()
    sys.exit(0 if not failed else 1)


if __name__ == "__main__":
    asyncio.run(main())
