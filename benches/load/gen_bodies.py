#!/usr/bin/env python3
"""Writes the upstream's SCIM bodies for the load benchmark.

    gen_bodies.py OUT_DIR UPSTREAM_BASE [USERS]

OUT_DIR/user.json  one SCIM User (~1 KB) with three URLs under UPSTREAM_BASE (two group $refs and
                   meta.location), as GET /Users/<id> returns it;
OUT_DIR/list.json  a ListResponse of USERS (default 1000) such users: ~1 MB, 3 * USERS URLs.

Same shape as benches/body_rewrite.rs, so criterion and load numbers describe the same bytes.
"""
import json
import os
import sys


def user(i: int, up: str) -> str:
    return (
        '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],'
        f'"id":"2819c223-7f76-453a-919d-{i:012d}","externalId":"00u{i:017d}",'
        f'"userName":"user{i}@acme.example","name":{{"formatted":"Barbara Jensen","familyName":"Jensen","givenName":"Barbara"}},'
        '"displayName":"Babs Jensen","active":true,'
        f'"emails":[{{"value":"user{i}@acme.example","type":"work","primary":true}}],'
        f'"groups":[{{"value":"e9e30dba-f08f-4109-8486-d5c6a331660a","$ref":"{up}/Groups/e9e30dba-f08f-4109-8486-d5c6a331660a","display":"Tour Guides"}},'
        f'{{"value":"fc348aa8-3835-40eb-a20b-c726e15c55b5","$ref":"{up}/Groups/fc348aa8-3835-40eb-a20b-c726e15c55b5","display":"Employees"}}],'
        f'"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{{"employeeNumber":"{i}","department":"Tour Operations"}},'
        f'"meta":{{"resourceType":"User","created":"2026-01-23T04:56:22Z","lastModified":"2026-05-13T04:42:34Z","version":"W/\\"a330bc54f0671c9\\"","location":"{up}/Users/2819c223-7f76-453a-919d-{i:012d}"}}}}'
    )


def main() -> None:
    out, up = sys.argv[1], sys.argv[2].rstrip("/")
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    os.makedirs(out, exist_ok=True)
    one = user(1, up)
    items = ",".join(user(i, up) for i in range(n))
    listing = (
        '{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],'
        f'"totalResults":{n},"startIndex":1,"itemsPerPage":{n},"Resources":[{items}]}}'
    )
    for text in (one, listing):
        json.loads(text)  # valid JSON, or stop here
    with open(os.path.join(out, "user.json"), "w") as f:
        f.write(one)
    with open(os.path.join(out, "list.json"), "w") as f:
        f.write(listing)
    print(
        f"user.json {len(one)} bytes, {one.count(up)} URLs; "
        f"list.json {len(listing)} bytes, {listing.count(up)} URLs"
    )


if __name__ == "__main__":
    main()
