//! Observability (issue 7) proved against real traffic through the proxy on loopback: every field of
//! the traffic log, the SCIM reading of each IdP's real request shapes, the PII policy, the log file
//! sink, the Prometheus metrics, `/readyz`, the v2 token lifecycle and `scim-proxy report`.
//!
//! Every test starts its own proxy in front of the embedded upstream and stops it: in process through
//! `tests/support`, or as a `scim-proxy serve` child where what is tested is its tracing output on
//! stderr. Requests carry an `X-Request-Id` of the test's own, so each one's record is found by id.

mod support;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use scim_proxy::lab::client::{Answer, ScimClient};
use scim_proxy::lab::devcerts;
use scim_proxy::lab::upstream::{Override, Upstream};
use serde_json::{Value, json};
use support::*;

/// JumpCloud's old "Token Key".
const JUMPCLOUD: &str = "jumpcloud-old-scim-token-c41d";

const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const LIST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// Upper bound for waiting on something asynchronous (a record, a log line, a metric).
const WAIT: Duration = Duration::from_secs(15);

/// A key for `pii_key_file` (16+ characters).
const PII_KEY: &str = "pii-key-for-the-observability-tests-0001";

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// What `pii = "hash"` logs for `value` with `key`: `h:` + the first 8 bytes of HMAC-SHA256, in hex.
fn pii_hash(key: &str, value: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.trim().as_bytes()).expect("HMAC key");
    mac.update(value.as_bytes());
    format!("h:{}", hex::encode(&mac.finalize().into_bytes()[..8]))
}

fn is_pii_hash(s: &str) -> bool {
    s.len() == 18
        && s.starts_with("h:")
        && s[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Adds `lines` to the `[log]` table the harness writes.
fn log_config(p: &mut Prepared, lines: &str) {
    p.edit_config(
        "[log]\ntraffic = \"traffic.log\"\n",
        &format!("[log]\ntraffic = \"traffic.log\"\n{lines}"),
    );
}

/// The route of the IdP tests: Okta, Entra ID and JumpCloud provisioning into one tenant.
fn three_idps() -> RouteSpec {
    RouteSpec::new("main").clients(&[("okta", OKTA), ("entra", ENTRA), ("jumpcloud", JUMPCLOUD)])
}

// ------------------------------------------------------------------------------------------ records

/// The complete lines of a JSON-lines file (a line still being written is left out); every complete
/// line must be a JSON object.
fn read_records(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    complete
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: not a JSON line ({e}): {l}", path.display()));
            assert!(v.is_object(), "not a JSON object: {l}");
            v
        })
        .collect()
}

/// The record of request `rid` in `dir/traffic.log`, waiting (bounded) for it to be written.
async fn record(dir: &Path, rid: &str) -> Value {
    let path = dir.join("traffic.log");
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(r) = read_records(&path)
            .into_iter()
            .find(|r| r["request_id"] == rid)
        {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "no traffic record {rid} within {WAIT:?}:\n{}",
            std::fs::read_to_string(&path).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (bounded) until `dir/traffic.log` holds at least `n` records.
async fn records_at_least(dir: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let records = read_records(&dir.join("traffic.log"));
        if records.len() >= n {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} traffic records within {WAIT:?}",
            records.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn keys(r: &Value) -> BTreeSet<String> {
    r.as_object().expect("object").keys().cloned().collect()
}

fn key_set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// A request with our request id, the IdP's bearer token (or none) and a JSON body.
async fn send(
    p: &TestProxy,
    token: Option<&str>,
    rid: Option<&str>,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Answer {
    let mut req = p.req(method, path);
    if let Some(t) = token {
        req = req.header("authorization", bearer(t));
    }
    if let Some(rid) = rid {
        req = req.header("x-request-id", rid);
    }
    let bytes = match body {
        Some(v) => {
            req = req.header("content-type", "application/scim+json; charset=utf-8");
            Bytes::from(v.to_string())
        }
        None => Bytes::new(),
    };
    p.call(req, bytes).await
}

/// The request the upstream received with this `X-Request-Id`.
fn upstream_saw(up: &Upstream, rid: &str) -> scim_proxy::lab::upstream::RecordedRequest {
    let all = up.requests();
    let mut hits = all
        .iter()
        .filter(|r| r.headers.get("x-request-id").and_then(|v| v.to_str().ok()) == Some(rid));
    let hit = hits
        .next()
        .unwrap_or_else(|| panic!("the upstream saw no request with X-Request-Id {rid}"))
        .clone();
    assert!(hits.next().is_none(), "{rid} reached the upstream twice");
    hit
}

fn scim_error_body(status: u16, scim_type: &str, detail: &str) -> Bytes {
    Bytes::from(
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": status.to_string(),
            "scimType": scim_type,
            "detail": detail,
        })
        .to_string(),
    )
}

fn canned(status: u16, body: Bytes, delay: Duration) -> Override {
    Override {
        status: StatusCode::from_u16(status).expect("status"),
        headers: vec![("content-type".into(), "application/scim+json".into())],
        body,
        delay,
    }
}

fn empty_list() -> Bytes {
    Bytes::from(
        json!({"schemas": [LIST_URN], "totalResults": 0, "startIndex": 1, "itemsPerPage": 0, "Resources": []})
            .to_string(),
    )
}

// ------------------------------------------------------------------------------------------ bodies

/// Okta's create body (OKTA-SCIM): password, groups: [], locale, externalId.
fn okta_user(user_name: &str, active: bool) -> Value {
    json!({
        "schemas": [USER_URN],
        "userName": user_name,
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": true, "value": user_name, "type": "work"}],
        "displayName": "Test User",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": active
    })
}

/// Entra ID's create body (MS-SCIM): core + enterprise schemas, externalId, meta.resourceType, roles: [].
fn entra_user(user_name: &str) -> Value {
    json!({
        "schemas": [USER_URN, ENTERPRISE_URN],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": user_name,
        "active": true,
        "emails": [{"primary": true, "type": "work", "value": user_name}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "Entra User", "familyName": "User", "givenName": "Entra"},
        "roles": [],
        ENTERPRISE_URN: {"employeeNumber": "701984", "department": "Tour Operations"}
    })
}

/// JumpCloud's full user (PUT for every change; `active` is `!suspended && !passwordExpired`).
fn jumpcloud_user(user_name: &str, active: bool) -> Value {
    json!({
        "schemas": [USER_URN],
        "userName": user_name,
        "externalId": "5f1e2d3c4b5a69788796a5b4",
        "name": {"givenName": "Jay", "familyName": "Cloud"},
        "emails": [{"primary": true, "type": "work", "value": user_name}],
        "active": active
    })
}

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_URN], "Operations": ops})
}

// ------------------------------------------------------------------------------------------ IdP steps

/// What a record's SCIM reading must say.
#[derive(Clone, Debug)]
enum Id {
    None,
    Is(String),
    /// The `id` of the resource in the answer's body (a create).
    FromAnswer,
}

#[derive(Clone, Debug)]
struct Want {
    resource: &'static str,
    op: &'static str,
    id: Id,
    subject: Option<String>,
}

fn want(resource: &'static str, op: &'static str) -> Want {
    Want {
        resource,
        op,
        id: Id::None,
        subject: None,
    }
}

impl Want {
    fn id(mut self, id: &str) -> Want {
        self.id = Id::Is(id.to_owned());
        self
    }
    fn created(mut self) -> Want {
        self.id = Id::FromAnswer;
        self
    }
    fn subject(mut self, s: &str) -> Want {
        self.subject = Some(s.to_owned());
        self
    }
}

/// One IdP talking to the proxy: each step sends a request with the IdP's token, headers and an
/// `X-Request-Id` of its own, then checks its traffic record.
struct Idp<'a> {
    p: &'a TestProxy,
    client: &'static str,
    token: &'static str,
    headers: &'static [(&'static str, &'static str)],
    /// `None`: `pii = "plain"`; `Some(key)`: `pii = "hash"` with this key.
    hash_key: Option<&'static str>,
    seq: Cell<u32>,
}

/// Okta's headers as captured from a real client (domain.md §2).
const OKTA_HEADERS: &[(&str, &str)] = &[
    ("user-agent", "Okta SCIM Client 1.0.0"),
    ("accept-charset", "utf-8"),
    ("accept-encoding", "gzip,deflate"),
];

impl<'a> Idp<'a> {
    fn okta(p: &'a TestProxy, hash_key: Option<&'static str>) -> Idp<'a> {
        Idp {
            p,
            client: "okta",
            token: OKTA,
            headers: OKTA_HEADERS,
            hash_key,
            seq: Cell::new(0),
        }
    }

    fn entra(p: &'a TestProxy, hash_key: Option<&'static str>) -> Idp<'a> {
        Idp {
            p,
            client: "entra",
            token: ENTRA,
            headers: &[],
            hash_key,
            seq: Cell::new(0),
        }
    }

    fn jumpcloud(p: &'a TestProxy, hash_key: Option<&'static str>) -> Idp<'a> {
        Idp {
            p,
            client: "jumpcloud",
            token: JUMPCLOUD,
            headers: &[],
            hash_key,
            seq: Cell::new(0),
        }
    }

    fn logged_subject(&self, s: &str) -> Value {
        match self.hash_key {
            None => json!(s),
            Some(k) => json!(pii_hash(k, s)),
        }
    }

    /// Sends the request, asserts the status and the record: client, method, statuses, byte counts,
    /// resource, op, resource_id and subject.
    async fn step(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        status: u16,
        want: Want,
    ) -> Answer {
        let n = self.seq.get() + 1;
        self.seq.set(n);
        let rid = format!("{}-{n:02}", self.client);
        let mut req = self
            .p
            .req(method.clone(), path)
            .header("authorization", bearer(self.token))
            .header("x-request-id", &rid);
        for (k, v) in self.headers {
            req = req.header(*k, *v);
        }
        let bytes = match &body {
            Some(v) => {
                req = req.header("content-type", "application/scim+json; charset=utf-8");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let sent = bytes.len();
        let a = self.p.call(req, bytes).await;
        let text = String::from_utf8_lossy(&a.body).into_owned();
        assert_eq!(a.status.as_u16(), status, "{rid} {method} {path}: {text}");
        let r = record(self.p.dir(), &rid).await;
        let ctx = format!("{rid} {method} {path}\nrecord: {r}\nanswer: {text}");
        assert_eq!(r["client"], json!(self.client), "{ctx}");
        assert_eq!(r["auth"], json!("ok"), "{ctx}");
        assert_eq!(r["method"], json!(method.as_str()), "{ctx}");
        assert_eq!(r["status"], json!(status), "{ctx}");
        assert_eq!(r["upstream_status"], json!(status), "{ctx}");
        assert_eq!(r["bytes_in"], json!(sent), "{ctx}");
        assert_eq!(r["bytes_out"], json!(a.body.len()), "{ctx}");
        assert_eq!(r["resource"], json!(want.resource), "{ctx}");
        assert_eq!(r["op"], json!(want.op), "{ctx}");
        let id = match &want.id {
            Id::None => Value::Null,
            Id::Is(id) => json!(id),
            Id::FromAnswer => {
                let id = a.json()["id"].clone();
                assert!(id.is_string(), "no id in the answer: {ctx}");
                id
            }
        };
        assert_eq!(r["resource_id"], id, "resource_id: {ctx}");
        let subject = want
            .subject
            .as_deref()
            .map_or(Value::Null, |s| self.logged_subject(s));
        assert_eq!(r["subject"], subject, "subject: {ctx}");
        a
    }
}

fn id_of(a: &Answer) -> String {
    a.json()["id"]
        .as_str()
        .expect("id in the answer")
        .to_owned()
}

/// Okta (OIN app): connection test, lookup, create, lookup that finds, read, PUT update, PATCH
/// deactivate and reactivate, Group Push with its path-less replace, member remove + add in one
/// PATCH, group delete. Okta never deletes users.
async fn okta_flow(o: &Idp<'_>) {
    let name = "okta.user@example.com";
    let group = "Okta Pushed Group";
    o.step(
        Method::GET,
        "/SCIM/v2/Users?startIndex=1&count=2",
        None,
        200,
        want("User", "user.list"),
    )
    .await;
    o.step(
        Method::GET,
        "/SCIM/v2/Groups?startIndex=1&count=100",
        None,
        200,
        want("Group", "group.list"),
    )
    .await;
    let lookup = "/SCIM/v2/Users?filter=userName%20eq%20%22okta.user%40example.com%22&startIndex=1&count=100";
    o.step(
        Method::GET,
        lookup,
        None,
        200,
        want("User", "user.lookup").subject(name),
    )
    .await;
    let a = o
        .step(
            Method::POST,
            "/SCIM/v2/Users",
            Some(okta_user(name, true)),
            201,
            want("User", "user.create").created().subject(name),
        )
        .await;
    let uid = id_of(&a);
    // Found now: the id comes from the single match in the ListResponse.
    o.step(
        Method::GET,
        lookup,
        None,
        200,
        want("User", "user.lookup").id(&uid).subject(name),
    )
    .await;
    let user_path = format!("/SCIM/v2/Users/{uid}");
    o.step(
        Method::GET,
        &user_path,
        None,
        200,
        want("User", "user.read").id(&uid).subject(name),
    )
    .await;
    let mut full = okta_user(name, true);
    full["id"] = json!(uid);
    full["name"]["familyName"] = json!("Renamed");
    o.step(
        Method::PUT,
        &user_path,
        Some(full),
        200,
        want("User", "user.update").id(&uid).subject(name),
    )
    .await;
    o.step(
        Method::PATCH,
        &user_path,
        Some(patch(
            json!([{"op": "replace", "value": {"active": false}}]),
        )),
        204,
        want("User", "user.deactivate").id(&uid),
    )
    .await;
    o.step(
        Method::PATCH,
        &user_path,
        Some(patch(json!([{"op": "replace", "value": {"active": true}}]))),
        204,
        want("User", "user.reactivate").id(&uid),
    )
    .await;
    // Group Push.
    let a = o
        .step(
            Method::POST,
            "/SCIM/v2/Groups",
            Some(json!({"schemas": [GROUP_URN], "displayName": group, "members": []})),
            201,
            want("Group", "group.create").created().subject(group),
        )
        .await;
    let gid = id_of(&a);
    let group_path = format!("/SCIM/v2/Groups/{gid}");
    o.step(
        Method::PATCH,
        &group_path,
        Some(patch(
            json!([{"op": "replace", "value": {"id": gid, "displayName": group}}]),
        )),
        204,
        want("Group", "group.update").id(&gid).subject(group),
    )
    .await;
    o.step(
        Method::PATCH,
        &group_path,
        Some(patch(
            json!([{"op": "add", "path": "members", "value": [{"value": uid, "display": name}]}]),
        )),
        204,
        want("Group", "group.members.add").id(&gid),
    )
    .await;
    o.step(
        Method::PATCH,
        &group_path,
        Some(patch(json!([
            {"op": "remove", "path": format!("members[value eq \"{uid}\"]")},
            {"op": "add", "path": "members", "value": [{"value": uid, "display": name}]}
        ]))),
        204,
        want("Group", "group.members.remove").id(&gid),
    )
    .await;
    o.step(
        Method::DELETE,
        &group_path,
        None,
        204,
        want("Group", "group.delete").id(&gid),
    )
    .await;
}

/// Entra ID: Test Connection with a random userName, `+`-encoded lookups, create, read, default-shape
/// updates (`Replace`, `"False"`), the `aadOptscim062020` shapes, groups created without members,
/// member add and both removal shapes, hard DELETE after the soft delete.
async fn entra_flow(e: &Idp<'_>) {
    let name = "entra.user@contoso.com";
    let group = "Entra Sales";
    e.step(
        Method::GET,
        "/SCIM/v2/Users?filter=userName+eq+%227d420df3-8c34-4e53-a5b5-4c4e5b8a3bd9%22",
        None,
        200,
        want("User", "user.lookup").subject("7d420df3-8c34-4e53-a5b5-4c4e5b8a3bd9"),
    )
    .await;
    e.step(
        Method::GET,
        "/SCIM/v2/Users?filter=userName+eq+%22entra.user%40contoso.com%22",
        None,
        200,
        want("User", "user.lookup").subject(name),
    )
    .await;
    let a = e
        .step(
            Method::POST,
            "/SCIM/v2/Users",
            Some(entra_user(name)),
            201,
            want("User", "user.create").created().subject(name),
        )
        .await;
    let uid = id_of(&a);
    let user_path = format!("/SCIM/v2/Users/{uid}");
    e.step(
        Method::GET,
        &user_path,
        None,
        200,
        want("User", "user.read").id(&uid).subject(name),
    )
    .await;
    e.step(
        Method::PATCH,
        &user_path,
        Some(patch(json!([
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "entra.user2@contoso.com"},
            {"op": "Replace", "path": "name.givenName", "value": "Entra2"}
        ]))),
        204,
        want("User", "user.update").id(&uid),
    )
    .await;
    // Default shape: capitalised op, `active` as the string "False".
    e.step(
        Method::PATCH,
        &user_path,
        Some(patch(
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )),
        204,
        want("User", "user.deactivate").id(&uid),
    )
    .await;
    e.step(
        Method::PATCH,
        &user_path,
        Some(patch(
            json!([{"op": "Replace", "path": "active", "value": "True"}]),
        )),
        204,
        want("User", "user.reactivate").id(&uid),
    )
    .await;
    // aadOptscim062020: lowercase op, boolean.
    e.step(
        Method::PATCH,
        &user_path,
        Some(patch(
            json!([{"op": "replace", "path": "active", "value": false}]),
        )),
        204,
        want("User", "user.deactivate").id(&uid),
    )
    .await;
    e.step(
        Method::GET,
        "/SCIM/v2/Groups?excludedAttributes=members&filter=displayName+eq+%22Entra+Sales%22",
        None,
        200,
        want("Group", "group.lookup").subject(group),
    )
    .await;
    let a = e
        .step(
            Method::POST,
            "/SCIM/v2/Groups",
            Some(json!({
                "schemas": [GROUP_URN],
                "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
                "displayName": group,
                "meta": {"resourceType": "Group"}
            })),
            201,
            want("Group", "group.create").created().subject(group),
        )
        .await;
    let gid = id_of(&a);
    let group_path = format!("/SCIM/v2/Groups/{gid}");
    let add =
        patch(json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": uid}]}]));
    e.step(
        Method::PATCH,
        &group_path,
        Some(add.clone()),
        204,
        want("Group", "group.members.add").id(&gid),
    )
    .await;
    e.step(
        Method::PATCH,
        &group_path,
        Some(patch(
            json!([{"op": "Remove", "path": "members", "value": [{"value": uid}]}]),
        )),
        204,
        want("Group", "group.members.remove").id(&gid),
    )
    .await;
    e.step(
        Method::PATCH,
        &group_path,
        Some(add),
        204,
        want("Group", "group.members.add").id(&gid),
    )
    .await;
    // aadOptscim062020 removal: a value filter in the path.
    e.step(
        Method::PATCH,
        &group_path,
        Some(patch(
            json!([{"op": "remove", "path": format!("members[value eq \"{uid}\"]")}]),
        )),
        204,
        want("Group", "group.members.remove").id(&gid),
    )
    .await;
    // The hard delete, 30 days after the soft delete (the deactivation above).
    e.step(
        Method::DELETE,
        &user_path,
        None,
        204,
        want("User", "user.delete").id(&uid),
    )
    .await;
    e.step(
        Method::DELETE,
        &group_path,
        None,
        204,
        want("Group", "group.delete").id(&gid),
    )
    .await;
}

/// JumpCloud: lookup, create, PUT with `active:false` (deprovision), PUT with `active:true`, group
/// with members as an array of objects, member remove/add by value without a filter, deletes.
async fn jumpcloud_flow(j: &Idp<'_>) {
    let name = "jc.user@example.org";
    let group = "JC Engineering";
    j.step(
        Method::GET,
        "/SCIM/v2/Users?filter=userName%20eq%20%22jc.user%40example.org%22",
        None,
        200,
        want("User", "user.lookup").subject(name),
    )
    .await;
    let a = j
        .step(
            Method::POST,
            "/SCIM/v2/Users",
            Some(jumpcloud_user(name, true)),
            201,
            want("User", "user.create").created().subject(name),
        )
        .await;
    let uid = id_of(&a);
    let user_path = format!("/SCIM/v2/Users/{uid}");
    j.step(
        Method::PUT,
        &user_path,
        Some(jumpcloud_user(name, false)),
        200,
        want("User", "user.deactivate").id(&uid).subject(name),
    )
    .await;
    // A PUT with active:true is what every full update carries: read as an update.
    j.step(
        Method::PUT,
        &user_path,
        Some(jumpcloud_user(name, true)),
        200,
        want("User", "user.update").id(&uid).subject(name),
    )
    .await;
    let a = j
        .step(
            Method::POST,
            "/SCIM/v2/Groups",
            Some(
                json!({"schemas": [GROUP_URN], "displayName": group, "members": [{"value": uid}]}),
            ),
            201,
            want("Group", "group.create").created().subject(group),
        )
        .await;
    let gid = id_of(&a);
    let group_path = format!("/SCIM/v2/Groups/{gid}");
    j.step(
        Method::PATCH,
        &group_path,
        Some(patch(
            json!([{"op": "remove", "path": "members", "value": [{"value": uid}]}]),
        )),
        204,
        want("Group", "group.members.remove").id(&gid),
    )
    .await;
    j.step(
        Method::PATCH,
        &group_path,
        Some(patch(
            json!([{"op": "add", "path": "members", "value": [{"value": uid}]}]),
        )),
        204,
        want("Group", "group.members.add").id(&gid),
    )
    .await;
    j.step(
        Method::PUT,
        &group_path,
        Some(json!({"schemas": [GROUP_URN], "displayName": group, "members": [{"value": uid}]})),
        200,
        want("Group", "group.update").id(&gid).subject(group),
    )
    .await;
    j.step(
        Method::DELETE,
        &user_path,
        None,
        204,
        want("User", "user.delete").id(&uid),
    )
    .await;
    j.step(
        Method::DELETE,
        &group_path,
        None,
        204,
        want("Group", "group.delete").id(&gid),
    )
    .await;
}

// ------------------------------------------------------------------------------------------ metrics

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The Prometheus text exposition as samples, and its `# TYPE` lines as (family, type).
struct Exposition {
    text: String,
    samples: Vec<Sample>,
    types: Vec<(String, String)>,
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let (k, after) = rest.split_once("=\"").expect("label=\"value\"");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, e)) = chars.next() {
                        value.push(match e {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(k.trim().to_owned(), value);
        rest = after[end..].trim_start_matches(',').trim();
    }
    out
}

fn parse_exposition(text: &str) -> Exposition {
    let mut samples = Vec::new();
    let mut types = Vec::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let (name, kind) = t.split_once(' ').expect("# TYPE name kind");
            types.push((name.to_owned(), kind.to_owned()));
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, parse_labels(l.strip_suffix('}').expect("}"))),
            None => (series, BTreeMap::new()),
        };
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse::<f64>()
                .unwrap_or_else(|e| panic!("bad value in {line:?}: {e}")),
        };
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Exposition {
        text: text.to_owned(),
        samples,
        types,
    }
}

impl Exposition {
    /// The value of the series with exactly these labels.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut hits = self
            .samples
            .iter()
            .filter(|s| s.name == name && s.labels == want);
        let hit = hits.next().map(|s| s.value);
        assert!(hits.next().is_none(), "{name}{want:?} appears twice");
        hit
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in\n{}", self.text))
    }

    fn series(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }
}

async fn scrape(admin: SocketAddr) -> Exposition {
    let a = plain_get(admin, "/metrics").await.expect("GET /metrics");
    assert_eq!(a.status, StatusCode::OK);
    parse_exposition(&String::from_utf8_lossy(&a.body))
}

/// Scrapes until `ok` holds (bounded).
async fn scrape_until(
    admin: SocketAddr,
    what: &str,
    ok: impl Fn(&Exposition) -> bool,
) -> Exposition {
    let deadline = Instant::now() + WAIT;
    loop {
        let m = scrape(admin).await;
        if ok(&m) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not within {WAIT:?}:\n{}",
            m.text
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// ------------------------------------------------------------------------------------------ serve child

/// `scim-proxy --log-format json serve` as a child: stdout and stderr go to files read back on
/// demand; killed when dropped.
struct Served {
    guard: ChildGuard,
    out: PathBuf,
    err: PathBuf,
    _dir: tempfile::TempDir,
    addr: SocketAddr,
    admin: Option<SocketAddr>,
    client: ScimClient,
}

impl Served {
    async fn start(config: &Path, ca_pem: &str) -> Served {
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("stdout");
        let err = dir.path().join("stderr");
        let child = Command::new(bin())
            .args(["--log-format", "json", "serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                std::fs::File::create(&out).expect("stdout file"),
            ))
            .stderr(Stdio::from(
                std::fs::File::create(&err).expect("stderr file"),
            ))
            .spawn()
            .expect("spawn scim-proxy serve");
        let mut guard = ChildGuard(Some(child));
        let deadline = Instant::now() + WAIT;
        let (addr, admin) = loop {
            let text = std::fs::read_to_string(&err).unwrap_or_default();
            let found = text.lines().find_map(|l| {
                let v: Value = serde_json::from_str(l).ok()?;
                if !v["message"].as_str()?.contains("serving") {
                    return None;
                }
                let addr = v["addr"].as_str()?.parse::<SocketAddr>().ok()?;
                let admin = v["admin"]
                    .as_str()
                    .and_then(|a| a.parse::<SocketAddr>().ok());
                Some((addr, admin))
            });
            if let Some(found) = found {
                break found;
            }
            if let Ok(Some(status)) = guard.child().try_wait() {
                panic!("serve exited early ({status}):\n{text}");
            }
            assert!(Instant::now() < deadline, "no 'serving' line:\n{text}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut tls = devcerts::client_config(ca_pem, &[]).expect("client TLS");
        // No SNI, so `get` may send any Host (as in tests/support).
        std::sync::Arc::make_mut(&mut tls).enable_sni = false;
        let client = ScimClient::new(&format!("https://localhost:{}", addr.port()), tls, false);
        Served {
            guard,
            out,
            err,
            _dir: dir,
            addr,
            admin,
            client,
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// The JSON lines of stderr (tracing, flattened).
    fn events(&self) -> Vec<Value> {
        self.stderr()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits (bounded) until at least `n` stderr events match `pred`; returns the matching ones.
    async fn wait_events(&self, what: &str, n: usize, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let hits: Vec<Value> = self.events().into_iter().filter(|e| pred(e)).collect();
            if hits.len() >= n {
                return hits;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {} of {n} within {WAIT:?}; stderr:\n{}",
                hits.len(),
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn get(&self, path: &str, token: &str, rid: &str, host: Option<&str>) -> Answer {
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(format!("https://localhost:{}{path}", self.addr.port()))
            .header("accept", "application/scim+json")
            .header("authorization", bearer(token))
            .header("x-request-id", rid);
        if let Some(h) = host {
            req = req.header("host", h);
        }
        self.client
            .request(req.body(Full::new(Bytes::new())).expect("request"))
            .await
            .expect("request to the serve child")
    }

    /// SIGTERM, then a bounded wait for exit 0; what it wrote to stdout and stderr.
    async fn stop(mut self) -> (String, String) {
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.guard.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Some(status)) = self.guard.child().try_wait() {
                assert!(status.success(), "serve exited with {status}");
                return (self.stdout(), self.stderr());
            }
            assert!(Instant::now() < deadline, "serve did not exit on SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn message(e: &Value) -> &str {
    e["message"].as_str().unwrap_or_default()
}

// ================================================================================ 1. traffic log fields

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_of_each_record_of_a_realistic_sequence() {
    let dead_port = unused_port().await;
    let p = Builder::new()
        .limit("upstream_timeout", "\"3s\"")
        .routes(vec![
            RouteSpec::new("main"),
            RouteSpec::new("dead")
                .target(Target::Url(format!(
                    "https://127.0.0.1:{dead_port}/api/v2/scim"
                )))
                .hosts(&["addon-b.example"])
                .clients(&[("okta", OKTA)]),
        ])
        .start()
        .await;
    let up = p.upstream(0).clone();
    let started = SystemTime::now();
    let forwarded = key_set(&[
        "ts",
        "request_id",
        "route",
        "client",
        "src_ip",
        "method",
        "path",
        "upstream_path",
        "status",
        "upstream_status",
        "duration_ms",
        "upstream_ms",
        "bytes_in",
        "bytes_out",
        "auth",
        "resource",
        "op",
    ]);
    let with = |extra: &[&str]| -> BTreeSet<String> {
        let mut k = forwarded.clone();
        k.extend(extra.iter().map(|s| s.to_string()));
        k
    };
    let mut all = Vec::new();

    // Okta's connection test, with its own X-Request-Id: kept, returned, and what the upstream saw.
    let a = send(
        &p,
        Some(OKTA),
        Some("okta-conn-test-1"),
        Method::GET,
        "/SCIM/v2/Users?startIndex=1&count=2",
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("x-request-id"), Some("okta-conn-test-1"));
    let r = record(p.dir(), "okta-conn-test-1").await;
    assert_eq!(keys(&r), forwarded, "{r}");
    assert_eq!(r["route"], "main");
    assert_eq!(r["client"], "okta");
    assert_eq!(r["src_ip"], "127.0.0.1");
    assert_eq!(r["method"], "GET");
    assert_eq!(r["path"], "/SCIM/v2/Users?startIndex=1&count=2");
    assert_eq!(
        r["upstream_path"],
        "/api/v2/scim/Users?startIndex=1&count=2"
    );
    assert_eq!(r["status"], 200);
    assert_eq!(r["upstream_status"], 200);
    assert_eq!(r["bytes_in"], 0);
    assert_eq!(r["bytes_out"], json!(a.body.len()));
    assert_eq!(r["auth"], "ok");
    assert_eq!(r["resource"], "User");
    assert_eq!(r["op"], "user.list");
    let seen = upstream_saw(&up, "okta-conn-test-1");
    assert_eq!(
        seen.path_and_query,
        "/api/v2/scim/Users?startIndex=1&count=2"
    );
    all.push(r);

    // No X-Request-Id: one is generated, returned, sent upstream and logged.
    let body = okta_user("pat.doe@example.com", true);
    let a = send(
        &p,
        Some(OKTA),
        None,
        Method::POST,
        "/SCIM/v2/Users",
        Some(&body),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let rid = a
        .header("x-request-id")
        .expect("a generated X-Request-Id is returned")
        .to_owned();
    assert!(uuid::Uuid::parse_str(&rid).is_ok(), "{rid}");
    let r = record(p.dir(), &rid).await;
    assert_eq!(keys(&r), with(&["resource_id", "subject"]), "{r}");
    assert_eq!(r["method"], "POST");
    assert_eq!(r["status"], 201);
    assert_eq!(r["upstream_status"], 201);
    assert_eq!(r["bytes_in"], json!(body.to_string().len()));
    assert_eq!(r["bytes_out"], json!(a.body.len()));
    assert_eq!(r["op"], "user.create");
    assert_eq!(r["resource_id"], a.json()["id"]);
    assert!(is_pii_hash(r["subject"].as_str().unwrap()), "{r}");
    assert_eq!(upstream_saw(&up, &rid).body.len(), body.to_string().len());
    let uid = id_of(&a);
    all.push(r);

    // The same user again: the upstream's 409 detail and scimType are in the record.
    let a = send(
        &p,
        Some(OKTA),
        Some("okta-dup"),
        Method::POST,
        "/SCIM/v2/Users",
        Some(&body),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    let r = record(p.dir(), "okta-dup").await;
    assert_eq!(keys(&r), with(&["subject", "detail", "scimType"]), "{r}");
    assert_eq!(r["status"], 409);
    assert_eq!(r["upstream_status"], 409);
    assert_eq!(r["scimType"], "uniqueness");
    let detail = r["detail"].as_str().unwrap();
    assert!(detail.contains("already exists"), "{detail}");
    assert!(!detail.contains("pat.doe"), "the user is named: {detail}");
    assert_eq!(r["bytes_out"], json!(a.body.len()));
    all.push(r);

    // An upstream SCIM Error of another kind, as it came.
    up.push_override(canned(
        400,
        scim_error_body(
            400,
            "invalidValue",
            "Attribute 'nickName' is not supported by this tenant",
        ),
        Duration::ZERO,
    ));
    let nick = patch(json!([{"op": "replace", "path": "nickName", "value": "Pat"}]));
    let a = send(
        &p,
        Some(OKTA),
        Some("okta-400"),
        Method::PATCH,
        &format!("/SCIM/v2/Users/{uid}"),
        Some(&nick),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let r = record(p.dir(), "okta-400").await;
    assert_eq!(
        keys(&r),
        with(&["resource_id", "detail", "scimType"]),
        "{r}"
    );
    assert_eq!(
        r["detail"],
        "Attribute 'nickName' is not supported by this tenant"
    );
    assert_eq!(r["scimType"], "invalidValue");
    assert_eq!(r["op"], "user.update");
    assert_eq!(r["resource_id"], json!(uid));
    assert_eq!(r["bytes_in"], json!(nick.to_string().len()));
    all.push(r);

    // A credential misplaced in the query: masked in both paths, never in the log.
    let a = send(
        &p,
        Some(OKTA),
        Some("okta-query-token"),
        Method::GET,
        "/SCIM/v2/Users?access_token=SeCrEt-ONE-77&startIndex=1&token=SeCrEt-TWO-88&count=2",
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let r = record(p.dir(), "okta-query-token").await;
    assert_eq!(
        r["path"],
        "/SCIM/v2/Users?access_token=***&startIndex=1&token=***&count=2"
    );
    assert_eq!(
        r["upstream_path"],
        "/api/v2/scim/Users?access_token=***&startIndex=1&token=***&count=2"
    );
    all.push(r);

    // Refused by the proxy: auth outcome, error, and nothing about an upstream.
    let refused = key_set(&[
        "ts",
        "request_id",
        "route",
        "src_ip",
        "method",
        "path",
        "status",
        "duration_ms",
        "bytes_in",
        "bytes_out",
        "auth",
        "error",
    ]);
    for (rid, authz, outcome) in [
        ("auth-missing", None, "missing"),
        ("auth-basic", Some("Basic b2t0YTpzZWNyZXQ="), "bad-scheme"),
        (
            "auth-unknown",
            Some("Bearer not-a-known-idp-token-4b2e"),
            "unknown-token",
        ),
    ] {
        let mut req = p
            .req(Method::GET, "/SCIM/v2/Users?startIndex=1&count=2")
            .header("x-request-id", rid);
        if let Some(v) = authz {
            req = req.header("authorization", v);
        }
        let a = p.call(req, Bytes::new()).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{rid}");
        assert_eq!(a.header("x-request-id"), Some(rid));
        let r = record(p.dir(), rid).await;
        assert_eq!(keys(&r), refused, "{r}");
        assert_eq!(r["auth"], outcome, "{r}");
        assert_eq!(r["error"], "unauthorized");
        assert_eq!(r["status"], 401);
        assert_eq!(r["route"], "main");
        assert_eq!(r["bytes_out"], json!(a.body.len()));
        all.push(r);
    }

    // An answer that took the upstream a while: upstream_ms and duration_ms cover it.
    up.push_override(canned(200, empty_list(), Duration::from_millis(700)));
    let a = send(
        &p,
        Some(ENTRA),
        Some("entra-slow"),
        Method::GET,
        "/SCIM/v2/Users?filter=userName+eq+%22slow%40contoso.com%22",
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let r = record(p.dir(), "entra-slow").await;
    assert_eq!(keys(&r), with(&["subject"]), "{r}");
    assert_eq!(r["client"], "entra");
    assert_eq!(r["op"], "user.lookup");
    let (up_ms, total_ms) = (
        r["upstream_ms"].as_u64().unwrap(),
        r["duration_ms"].as_u64().unwrap(),
    );
    assert!(up_ms >= 700, "{r}");
    assert!(total_ms >= up_ms, "{r}");
    all.push(r);

    // 504: the proxy's own failure, no upstream status.
    up.push_override(canned(200, empty_list(), Duration::from_secs(6)));
    let a = send(
        &p,
        Some(ENTRA),
        Some("entra-timeout"),
        Method::GET,
        "/SCIM/v2/Groups?excludedAttributes=members&filter=displayName+eq+%22Slow%22",
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT);
    let r = record(p.dir(), "entra-timeout").await;
    assert_eq!(r["error"], "upstream-timeout", "{r}");
    assert_eq!(r["status"], 504);
    assert!(r.get("upstream_status").is_none(), "{r}");
    assert_eq!(r["op"], "group.lookup");
    let subject = r["subject"].as_str().unwrap();
    assert_eq!(
        r["upstream_path"],
        json!(format!(
            "/api/v2/scim/Groups?excludedAttributes=members&filter=displayName%20eq%20%22{subject}%22"
        ))
    );
    assert!(r["duration_ms"].as_u64().unwrap() >= 3000, "{r}");
    assert_eq!(r["bytes_out"], json!(a.body.len()));
    all.push(r);

    // 502: nothing listens behind route "dead".
    let a = p
        .call(
            p.req(Method::GET, "/SCIM/v2/Users?startIndex=1&count=2")
                .header("host", "addon-b.example")
                .header("authorization", bearer(OKTA))
                .header("x-request-id", "dead-connect"),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    let r = record(p.dir(), "dead-connect").await;
    assert_eq!(r["route"], "dead");
    assert_eq!(r["client"], "okta");
    assert_eq!(r["error"], "upstream-connect", "{r}");
    assert!(r.get("upstream_status").is_none(), "{r}");
    assert_eq!(
        r["upstream_path"],
        "/api/v2/scim/Users?startIndex=1&count=2"
    );
    all.push(r);

    // Every record: RFC 3339 UTC with milliseconds, within the test's run.
    let finished = SystemTime::now();
    for r in &all {
        let ts = r["ts"].as_str().expect("ts");
        let b = ts.as_bytes();
        assert!(
            ts.len() == 24 && ts.ends_with('Z') && b[10] == b'T' && b[19] == b'.',
            "ts {ts:?}"
        );
        let t = humantime::parse_rfc3339(ts).unwrap_or_else(|e| panic!("ts {ts:?}: {e}"));
        assert!(
            t + Duration::from_secs(1) >= started && t <= finished + Duration::from_secs(1),
            "ts {ts} outside the test"
        );
    }
    let raw = std::fs::read_to_string(p.dir().join("traffic.log")).unwrap();
    for s in p.secrets().iter().map(String::as_str).chain([
        "SeCrEt-ONE-77",
        "SeCrEt-TWO-88",
        "not-a-known-idp-token-4b2e",
        "b2t0YTpzZWNyZXQ=",
    ]) {
        assert!(!raw.contains(s), "{s} is in the traffic log");
    }
    p.stop().await;
}

/// `ts` is documented (src/traffic_log.rs) as the time the request arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ts_is_when_the_request_arrived() {
    let p = Builder::new().start().await;
    let delay = Duration::from_millis(1500);
    p.upstream(0)
        .push_override(canned(200, empty_list(), delay));
    let a = send(
        &p,
        Some(OKTA),
        Some("ts-1"),
        Method::GET,
        "/SCIM/v2/Users",
        None,
    )
    .await;
    let answered = SystemTime::now();
    assert_eq!(a.status, StatusCode::OK);
    let r = record(p.dir(), "ts-1").await;
    let ts = humantime::parse_rfc3339(r["ts"].as_str().unwrap()).unwrap();
    // The request arrived at least `delay` before the answer reached the client.
    assert!(
        ts + delay <= answered + Duration::from_millis(5),
        "ts {} is not the arrival time (answered at {})",
        r["ts"],
        humantime::format_rfc3339_millis(answered)
    );
    p.stop().await;
}

// ================================================================================ 2. the SCIM reading

async fn reading_proxy() -> TestProxy {
    let mut prepared = Builder::new().routes(vec![three_idps()]).prepare().await;
    log_config(&mut prepared, "pii = \"plain\"\n");
    prepared.start().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_requests_are_read_as_scim_operations() {
    let p = reading_proxy().await;
    okta_flow(&Idp::okta(&p, None)).await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_requests_are_read_as_scim_operations() {
    let p = reading_proxy().await;
    entra_flow(&Idp::entra(&p, None)).await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jumpcloud_requests_are_read_as_scim_operations() {
    let p = reading_proxy().await;
    let j = Idp::jumpcloud(&p, None);
    jumpcloud_flow(&j).await;
    // Discovery, whatever the upstream answers to it (the embedded one has no such endpoint).
    for path in ["/SCIM/v2/ServiceProviderConfig", "/SCIM/v2/Schemas"] {
        j.step(Method::GET, path, None, 404, want("discovery", "discovery"))
            .await;
    }
    p.stop().await;
}

/// What the traffic log reads of the upstream's answer: the same records whether the upstream
/// announces a Content-Length or answers chunked (streamed bodies are teed for the record).
async fn records_of_read_and_conflict(chunked: bool) -> (Value, Value) {
    let mut prepared = Builder::new().h1_upstream().prepare().await;
    log_config(&mut prepared, "pii = \"plain\"\n");
    let p = prepared.start().await;
    p.upstream(0).set_chunked(chunked);
    let framing = |a: &Answer| a.header("content-length").is_some();
    let user = okta_user("framing.user@example.com", true);
    let created = send(
        &p,
        Some(OKTA),
        None,
        Method::POST,
        "/SCIM/v2/Users",
        Some(&user),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let uid = id_of(&created);

    let read = send(
        &p,
        Some(OKTA),
        Some("framing-read"),
        Method::GET,
        &format!("/SCIM/v2/Users/{uid}"),
        None,
    )
    .await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.json()["userName"], "framing.user@example.com");
    // The upstream's framing carries through: a chunked answer is streamed, not read whole.
    assert_eq!(framing(&read), !chunked, "{:?}", read.headers);
    let dup = send(
        &p,
        Some(OKTA),
        Some("framing-dup"),
        Method::POST,
        "/SCIM/v2/Users",
        Some(&user),
    )
    .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(framing(&dup), !chunked, "{:?}", dup.headers);
    let records = (
        record(p.dir(), "framing-read").await,
        record(p.dir(), "framing-dup").await,
    );
    p.stop().await;
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scim_reading_of_an_answer_does_not_depend_on_its_framing() {
    let (read, dup) = records_of_read_and_conflict(false).await;
    assert_eq!(read["op"], "user.read");
    assert_eq!(read["subject"], "framing.user@example.com", "{read}");
    assert_eq!(dup["scimType"], "uniqueness", "{dup}");
    let detail = dup["detail"].as_str().expect("detail");
    assert!(detail.contains("already exists"), "{detail}");

    let (chunked_read, chunked_dup) = records_of_read_and_conflict(true).await;
    // Everything but what differs from run to run (ids, times, sizes of the framing).
    let same = |r: &Value| {
        let mut r = r.clone();
        let o = r.as_object_mut().expect("object");
        for k in [
            "ts",
            "duration_ms",
            "upstream_ms",
            "resource_id",
            "path",
            "upstream_path",
            "bytes_out",
        ] {
            o.remove(k);
        }
        r
    };
    assert_eq!(same(&chunked_read), same(&read));
    assert_eq!(same(&chunked_dup), same(&dup));
    assert_eq!(chunked_read["subject"], "framing.user@example.com");
    assert_eq!(chunked_dup["detail"], dup["detail"]);
    assert_eq!(chunked_dup["scimType"], "uniqueness");
}

// ================================================================================ 3. privacy

/// Every form of `name` a log could carry: as is, lower-cased, and percent-encoded.
fn assert_never_named(raw: &str, name: &str) {
    let lower = raw.to_lowercase();
    for form in [name.to_lowercase(), name.replace('@', "%40").to_lowercase()] {
        assert!(!lower.contains(&form), "{form} is in the log:\n{raw}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pii_hash_is_keyed_stable_across_restarts_and_never_names_the_user() {
    let name = "okta.user@example.com";
    let mut prepared = Builder::new().prepare().await;
    log_config(&mut prepared, "pii_key_file = \"pii.key\"\n");
    write_private(prepared.dir.path(), "pii.key", &format!("{PII_KEY}\n"));
    let p = prepared.start().await;
    let h = pii_hash(PII_KEY, name);
    let lookup = "/SCIM/v2/Users?filter=userName%20eq%20%22okta.user%40example.com%22&startIndex=1&count=100";

    let a = send(&p, Some(OKTA), Some("h-1"), Method::GET, lookup, None).await;
    assert_eq!(a.status, StatusCode::OK);
    let a = send(
        &p,
        Some(OKTA),
        Some("h-2"),
        Method::POST,
        "/SCIM/v2/Users",
        Some(&okta_user(name, true)),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let uid = id_of(&a);
    let a = send(
        &p,
        Some(OKTA),
        Some("h-3"),
        Method::POST,
        "/SCIM/v2/Users",
        Some(&okta_user(name, true)),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    let a = send(
        &p,
        Some(ENTRA),
        Some("h-4"),
        Method::GET,
        &format!("/SCIM/v2/Users/{uid}"),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let a = send(
        &p,
        Some(ENTRA),
        Some("h-5"),
        Method::GET,
        "/SCIM/v2/Users?filter=userName+eq+%22okta.user%40example.com%22",
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    for rid in ["h-1", "h-2", "h-3", "h-4", "h-5"] {
        let r = record(p.dir(), rid).await;
        assert_eq!(r["subject"], json!(h), "{r}");
    }
    // The filter literal in both paths is the same hash.
    let r = record(p.dir(), "h-1").await;
    let encoded = format!("%22{h}%22");
    assert!(r["path"].as_str().unwrap().contains(&encoded), "{r}");
    assert!(
        r["upstream_path"].as_str().unwrap().contains(&encoded),
        "{r}"
    );
    let r = record(p.dir(), "h-3").await;
    assert!(
        r["detail"].as_str().unwrap().contains("already exists"),
        "{r}"
    );
    let raw = std::fs::read_to_string(p.dir().join("traffic.log")).unwrap();
    assert_never_named(&raw, name);

    // A restart with the same key file: the same hash.
    let TestProxy {
        running, prepared, ..
    } = p;
    bounded("stop", running.expect("running").stop()).await;
    let p = prepared.start().await;
    let a = send(&p, Some(OKTA), Some("h-6"), Method::GET, lookup, None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(record(p.dir(), "h-6").await["subject"], json!(h));

    // Another key: another hash, same form.
    write_private(p.dir(), "pii.key", "another-pii-key-of-this-deployment\n");
    let TestProxy {
        running, prepared, ..
    } = p;
    bounded("stop", running.expect("running").stop()).await;
    let p = prepared.start().await;
    let a = send(&p, Some(OKTA), Some("h-7"), Method::GET, lookup, None).await;
    assert_eq!(a.status, StatusCode::OK);
    let other = record(p.dir(), "h-7").await["subject"].clone();
    assert!(is_pii_hash(other.as_str().unwrap()), "{other}");
    assert_ne!(other, json!(h));
    assert_eq!(
        other,
        json!(pii_hash("another-pii-key-of-this-deployment", name))
    );
    let raw = std::fs::read_to_string(p.dir().join("traffic.log")).unwrap();
    assert_never_named(&raw, name);
    p.stop().await;
}

/// The upstream's 409 detail names the user as it stored it (lower-cased by the embedded upstream);
/// the scrubbing of `detail` must catch that form too, not only the exact subject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pii_hash_keeps_a_non_email_user_name_out_of_an_upstream_detail() {
    let name = "Pat.Doe";
    let p = Builder::new().start().await;
    let body = jumpcloud_user(name, true);
    for rid in ["nd-1", "nd-2"] {
        send(
            &p,
            Some(OKTA),
            Some(rid),
            Method::POST,
            "/SCIM/v2/Users",
            Some(&body),
        )
        .await;
    }
    let r = record(p.dir(), "nd-2").await;
    assert_eq!(r["status"], 409, "{r}");
    let raw = std::fs::read_to_string(p.dir().join("traffic.log")).unwrap();
    assert_never_named(&raw, name);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pii_plain_names_the_user_and_omit_leaves_the_subject_out() {
    let name = "entra.user@contoso.com";
    let mut prepared = Builder::new().prepare().await;
    log_config(&mut prepared, "pii = \"plain\"\n");
    let mut p = prepared.start().await;
    let lookup = "/SCIM/v2/Users?filter=userName+eq+%22entra.user%40contoso.com%22";
    send(&p, Some(ENTRA), Some("plain-1"), Method::GET, lookup, None).await;
    send(
        &p,
        Some(ENTRA),
        Some("plain-2"),
        Method::POST,
        "/SCIM/v2/Users",
        Some(&entra_user(name)),
    )
    .await;
    let a = send(
        &p,
        Some(ENTRA),
        Some("plain-3"),
        Method::POST,
        "/SCIM/v2/Users",
        Some(&entra_user(name)),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    let r = record(p.dir(), "plain-1").await;
    assert_eq!(r["subject"], name);
    // Plain keeps the path exactly as received.
    assert_eq!(r["path"], lookup);
    assert_eq!(record(p.dir(), "plain-2").await["subject"], name);
    let r = record(p.dir(), "plain-3").await;
    assert!(r["detail"].as_str().unwrap().contains(name), "{r}");

    // The same proxy reloaded with pii = "omit".
    p.prepared.edit_config("pii = \"plain\"", "pii = \"omit\"");
    p.running().reload().expect("reload");
    send(&p, Some(ENTRA), Some("omit-1"), Method::GET, lookup, None).await;
    send(
        &p,
        Some(ENTRA),
        Some("omit-2"),
        Method::POST,
        "/SCIM/v2/Users",
        Some(&entra_user(name)),
    )
    .await;
    let r = record(p.dir(), "omit-1").await;
    assert!(r.get("subject").is_none(), "{r}");
    assert_eq!(r["op"], "user.lookup");
    assert_eq!(r["path"], "/SCIM/v2/Users?filter=userName%20eq%20%22***%22");
    let r = record(p.dir(), "omit-2").await;
    assert!(r.get("subject").is_none(), "{r}");
    assert_eq!(r["status"], 409);
    assert_eq!(
        r["detail"], "User with userName \"***\" already exists",
        "{r}"
    );
    let text = std::fs::read_to_string(p.dir().join("traffic.log")).unwrap();
    let after: String = text
        .lines()
        .filter(|l| l.contains("\"omit-"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_never_named(&after, name);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_bodies_mask_passwords_and_follow_the_pii_policy() {
    let name = "okta.user@example.com";
    let mut prepared = Builder::new().prepare().await;
    log_config(
        &mut prepared,
        "pii_key_file = \"pii.key\"\ncapture_bodies = true\n",
    );
    write_private(prepared.dir.path(), "pii.key", PII_KEY);
    let mut p = prepared.start().await;
    let h = |s: &str| json!(pii_hash(PII_KEY, s));

    let body = okta_user(name, true);
    let a = send(
        &p,
        Some(OKTA),
        Some("cap-1"),
        Method::POST,
        "/SCIM/v2/Users",
        Some(&body),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let uid = id_of(&a);
    let r = record(p.dir(), "cap-1").await;
    let req = &r["request_body"];
    assert_eq!(req["password"], "***", "{r}");
    assert_eq!(req["userName"], h(name));
    assert_eq!(req["name"]["givenName"], h("Test"));
    assert_eq!(req["emails"][0]["value"], h(name));
    assert_eq!(req["emails"][0]["type"], "work");
    assert_eq!(req["externalId"], h("00ujl29u0le5T6Aj10h7"));
    assert_eq!(req["active"], true);
    assert_eq!(req["locale"], "en-US");
    let res = &r["response_body"];
    assert_eq!(res["id"], json!(uid), "{r}");
    assert_eq!(res["userName"], h(name));
    assert_ne!(res["password"], "1mz050nq");

    // A PATCH setting a password, and a group whose own name is not personal.
    let a = send(
        &p,
        Some(OKTA),
        Some("cap-2"),
        Method::PATCH,
        &format!("/SCIM/v2/Users/{uid}"),
        Some(&patch(
            json!([{"op": "replace", "path": "password", "value": "n3w-Passw0rd!"}]),
        )),
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let r = record(p.dir(), "cap-2").await;
    assert_eq!(r["request_body"]["Operations"][0]["value"], "***", "{r}");
    assert!(r.get("response_body").is_none(), "a 204 has no body: {r}");
    let group = json!({"schemas": [GROUP_URN], "displayName": "Finance", "members": [{"value": uid, "display": name}]});
    send(
        &p,
        Some(OKTA),
        Some("cap-3"),
        Method::POST,
        "/SCIM/v2/Groups",
        Some(&group),
    )
    .await;
    let r = record(p.dir(), "cap-3").await;
    assert_eq!(r["request_body"]["displayName"], "Finance", "{r}");
    assert_eq!(r["request_body"]["members"][0]["display"], h(name));
    assert_eq!(r["request_body"]["members"][0]["value"], json!(uid));
    let raw = std::fs::read_to_string(p.dir().join("traffic.log")).unwrap();
    for secret in ["1mz050nq", "n3w-Passw0rd!"] {
        assert!(!raw.contains(secret), "{secret} in the log");
    }
    assert_never_named(&raw, name);

    // Plain: personal values shown, the password still masked.
    p.prepared.edit_config(
        "capture_bodies = true",
        "capture_bodies = true\npii = \"plain\"",
    );
    p.running().reload().expect("reload");
    let other = okta_user("kim.lee@example.com", true);
    send(
        &p,
        Some(OKTA),
        Some("cap-4"),
        Method::POST,
        "/SCIM/v2/Users",
        Some(&other),
    )
    .await;
    let r = record(p.dir(), "cap-4").await;
    assert_eq!(r["request_body"]["userName"], "kim.lee@example.com", "{r}");
    assert_eq!(r["request_body"]["password"], "***");
    assert_eq!(r["response_body"]["userName"], "kim.lee@example.com");
    p.stop().await;
}

// ================================================================================ 4. the log sink

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traffic_file_rotates_under_traffic_keeping_whole_lines() {
    let mut prepared = Builder::new().prepare().await;
    prepared.edit_config(
        "traffic = \"traffic.log\"\n",
        "traffic = \"x.log\"\nmax_file_bytes = 4096\nkeep_files = 2\n",
    );
    let p = prepared.start().await;
    // 4 IdP connections at once, 15 lookups each: about 30 KiB of records.
    let mut tasks = Vec::new();
    for t in 0..4 {
        let client = p.client.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..15 {
                let a = client
                    .send(
                        Method::GET,
                        &format!(
                            "/SCIM/v2/Users?filter=userName%20eq%20%22user{t}-{i}%40example.com%22"
                        ),
                        Some(OKTA),
                        None,
                    )
                    .await
                    .expect("request");
                assert_eq!(a.status, StatusCode::OK);
            }
        }));
    }
    for t in tasks {
        bounded("burst", t).await.expect("task");
    }
    let last = send(
        &p,
        Some(ENTRA),
        Some("the-last-one"),
        Method::GET,
        "/SCIM/v2/Users",
        None,
    )
    .await;
    assert_eq!(last.status, StatusCode::OK);
    let current = p.dir().join("x.log");
    let deadline = Instant::now() + WAIT;
    while !read_records(&current)
        .iter()
        .any(|r| r["request_id"] == "the-last-one")
    {
        assert!(Instant::now() < deadline, "the last record never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut names: Vec<String> = std::fs::read_dir(p.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".log"))
        .collect();
    names.sort();
    assert_eq!(names, ["x.log", "x.log.1", "x.log.2"]);
    let mut ids = BTreeSet::new();
    for name in &names {
        let text = std::fs::read_to_string(p.dir().join(name)).unwrap();
        assert!(text.len() <= 4096, "{name}: {} bytes", text.len());
        assert!(text.ends_with('\n'), "{name} ends mid-line");
        for line in text.lines() {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{name}: torn line ({e}): {line}"));
            assert!(
                ids.insert(v["request_id"].as_str().unwrap().to_owned()),
                "duplicate {line}"
            );
        }
    }
    // The last record is the last line of the current file; older ones were rotated away.
    let text = std::fs::read_to_string(&current).unwrap();
    assert!(text.lines().last().unwrap().contains("\"the-last-one\""));
    assert!(ids.len() < 61, "nothing was pruned: {}", ids.len());
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_off_writes_no_record_and_the_access_line_goes_to_stderr() {
    let mut prepared = Builder::new().prepare().await;
    prepared.edit_config("traffic = \"traffic.log\"", "traffic = \"off\"");
    let served = Served::start(&prepared.config_path, &prepared.ca_pem).await;
    let a = served
        .get("/SCIM/v2/Users?startIndex=1&count=2", OKTA, "off-1", None)
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let a = served
        .get(
            "/SCIM/v2/Users",
            "not-a-known-idp-token-4b2e",
            "off-2",
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let lines = served
        .wait_events("access lines", 2, |e| {
            e["target"] == "scim_proxy::access" && message(e) == "request"
        })
        .await;
    let ok = lines
        .iter()
        .find(|e| e["request_id"] == "off-1")
        .expect("off-1");
    assert_eq!(ok["status"], 200, "{ok}");
    assert_eq!(ok["upstream_status"], 200);
    assert_eq!(ok["route"], "main");
    assert_eq!(ok["client"], "okta");
    assert_eq!(ok["op"], "user.list");
    assert_eq!(ok["auth"], "ok");
    assert_eq!(ok["src_ip"], "127.0.0.1");
    let refused = lines
        .iter()
        .find(|e| e["request_id"] == "off-2")
        .expect("off-2");
    assert_eq!(refused["status"], 401, "{refused}");
    assert_eq!(refused["auth"], "unknown-token");
    assert!(!served.stderr().contains("not-a-known-idp-token-4b2e"));
    let (stdout, _) = served.stop().await;
    assert_eq!(stdout, "", "traffic = \"off\" writes no record to stdout");
    assert!(!prepared.dir.path().join("traffic.log").exists());
    prepared.shutdown().await;
}

// ================================================================================ 5. metrics

/// Requests by (route, client, op, status_class) as `scim_proxy_requests_total` exposes them.
fn request_counts(m: &Exposition) -> BTreeMap<(String, String, String, String), f64> {
    m.series("scim_proxy_requests_total")
        .into_iter()
        .map(|s| {
            let l = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
            (
                (l("route"), l("client"), l("op"), l("status_class")),
                s.value,
            )
        })
        .collect()
}

fn total(m: &Exposition, name: &str) -> f64 {
    m.series(name).iter().map(|s| s.value).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_latency_and_upstream_failures_of_real_traffic() {
    let dead_port = unused_port().await;
    let p = Builder::new()
        .admin()
        .limit("upstream_timeout", "\"2s\"")
        .routes(vec![
            RouteSpec::new("main"),
            RouteSpec::new("dead")
                .target(Target::Url(format!(
                    "https://127.0.0.1:{dead_port}/api/v2/scim"
                )))
                .hosts(&["addon-b.example"])
                .clients(&[("okta", OKTA)]),
        ])
        .start()
        .await;
    let admin = p.running().admin_addr.expect("admin");
    let up = p.upstream(0).clone();
    let before = scrape(admin).await;
    assert!(before.series("scim_proxy_requests_total").is_empty());
    assert_eq!(before.value("scim_proxy_in_flight_requests", &[]), 0.0);

    let ok = |a: &Answer, s: u16| assert_eq!(a.status.as_u16(), s, "{:?}", a.body);
    for _ in 0..3 {
        ok(
            &p.get("/SCIM/v2/Users?startIndex=1&count=2", OKTA).await,
            200,
        );
    }
    let body = okta_user("metrics.user@example.com", true);
    ok(
        &send(
            &p,
            Some(OKTA),
            None,
            Method::POST,
            "/SCIM/v2/Users",
            Some(&body),
        )
        .await,
        201,
    );
    ok(
        &send(
            &p,
            Some(OKTA),
            None,
            Method::POST,
            "/SCIM/v2/Users",
            Some(&body),
        )
        .await,
        409,
    );
    ok(
        &p.get("/SCIM/v2/Users?filter=userName+eq+%22x%40y.z%22", ENTRA)
            .await,
        200,
    );
    ok(
        &p.get("/SCIM/v2/Users", "not-a-known-idp-token-4b2e").await,
        401,
    );
    ok(&p.get("/elsewhere", OKTA).await, 404);
    up.push_override(canned(
        503,
        scim_error_body(503, "", "maintenance"),
        Duration::ZERO,
    ));
    ok(&p.get("/SCIM/v2/Users", OKTA).await, 503);
    up.push_override(canned(
        401,
        scim_error_body(401, "", "invalid token"),
        Duration::ZERO,
    ));
    ok(&p.get("/SCIM/v2/Groups", OKTA).await, 401);
    up.push_override(canned(200, empty_list(), Duration::from_secs(5)));
    ok(&p.get("/SCIM/v2/Groups", ENTRA).await, 504);
    let a = p
        .call(
            p.req(Method::GET, "/SCIM/v2/Users")
                .header("host", "addon-b.example")
                .header("authorization", bearer(OKTA)),
            Bytes::new(),
        )
        .await;
    ok(&a, 502);

    let m = scrape_until(admin, "12 requests counted", |m| {
        total(m, "scim_proxy_requests_total") == 12.0
    })
    .await;
    let want: BTreeMap<(String, String, String, String), f64> = [
        (("main", "okta", "user.list", "2xx"), 3.0),
        (("main", "okta", "user.create", "2xx"), 1.0),
        (("main", "okta", "user.create", "4xx"), 1.0),
        (("main", "entra", "user.lookup", "2xx"), 1.0),
        // Refused before authentication (401) or routing within the route (404): no client, no op.
        (("main", "-", "-", "4xx"), 2.0),
        (("main", "okta", "user.list", "5xx"), 1.0),
        (("main", "okta", "group.list", "4xx"), 1.0),
        (("main", "entra", "group.list", "5xx"), 1.0),
        (("dead", "okta", "user.list", "5xx"), 1.0),
    ]
    .into_iter()
    .map(|((r, c, o, s), n)| ((r.to_owned(), c.to_owned(), o.to_owned(), s.to_owned()), n))
    .collect();
    assert_eq!(request_counts(&m), want, "\n{}", m.text);

    // Latency histograms: every answered request, and every upstream answer.
    let main = [("route", "main")];
    assert_eq!(
        m.value("scim_proxy_request_duration_seconds_count", &main),
        11.0
    );
    assert_eq!(
        m.value(
            "scim_proxy_request_duration_seconds_count",
            &[("route", "dead")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "scim_proxy_request_duration_seconds_bucket",
            &[("route", "main"), ("le", "+Inf")]
        ),
        11.0
    );
    // 3 lists, create, duplicate, lookup, 503, 401, and the 504 (the time it waited upstream).
    assert_eq!(
        m.value("scim_proxy_upstream_duration_seconds_count", &main),
        9.0
    );
    assert!(
        m.value("scim_proxy_request_duration_seconds_sum", &main) > 2.0,
        "the 504 took 2 s"
    );

    // Every route x kind is exported (at 0 until it happens); these are the ones that happened.
    let failures: BTreeMap<(String, String), f64> = m
        .series("scim_proxy_upstream_failures_total")
        .into_iter()
        .filter(|s| s.value > 0.0)
        .map(|s| {
            (
                (s.labels["route"].clone(), s.labels["kind"].clone()),
                s.value,
            )
        })
        .collect();
    let want_failures: BTreeMap<(String, String), f64> = [
        ("main", "5xx"),
        ("main", "auth"),
        ("main", "timeout"),
        ("dead", "connect"),
    ]
    .into_iter()
    .map(|(r, k)| ((r.to_owned(), k.to_owned()), 1.0))
    .collect();
    assert_eq!(failures, want_failures, "\n{}", m.text);

    // Nothing in flight once every body is done; no route has token_expires.
    scrape_until(admin, "in_flight back to 0", |m| {
        m.value("scim_proxy_in_flight_requests", &[]) == 0.0
    })
    .await;
    assert!(m.series("scim_proxy_token_expiry_seconds").is_empty());
    p.stop().await;
}

/// The families exposed, exactly (name and type). Every family but `requests` (whose `op` and
/// `status_class` are only known per request) is there before any traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_exposes_exactly_these_families() {
    let p = Builder::new()
        .admin()
        .routes(vec![route_expiring("main", SystemTime::now() + 30 * DAY)])
        .start()
        .await;
    let admin = p.running().admin_addr.expect("admin");
    let families = |m: &Exposition| -> Vec<(String, String)> { m.types.clone() };
    let idle = scrape(admin).await;
    let pair = |n: &str, t: &str| (n.to_owned(), t.to_owned());
    // token_expiry_seconds is filled in at scrape time for routes with token_expires.
    assert_eq!(
        families(&idle),
        [
            pair("scim_proxy_request_duration_seconds", "histogram"),
            pair("scim_proxy_upstream_duration_seconds", "histogram"),
            pair("scim_proxy_upstream_failures", "counter"),
            pair("scim_proxy_in_flight_requests", "gauge"),
            pair("scim_proxy_token_expiry_seconds", "gauge"),
            pair("scim_proxy_token_expiry_stale", "gauge"),
            pair("scim_proxy_reloads", "counter"),
            pair("scim_proxy_connections_refused", "counter"),
            pair("scim_proxy_open_connections", "gauge"),
            pair("scim_proxy_log_records_dropped", "counter"),
        ],
        "\n{}",
        idle.text
    );
    // One of everything: a request, an upstream failure, a reload, a refused (plain HTTP) connection.
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
    p.upstream(0).push_override(canned(
        503,
        scim_error_body(503, "", "busy"),
        Duration::ZERO,
    ));
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status.as_u16(), 503);
    p.running().reload().expect("reload");
    let _ = plain_get(p.addr, "/SCIM/v2/Users").await;
    let m = scrape_until(admin, "every family", |m| {
        total(m, "scim_proxy_requests_total") == 2.0
            && m.get("scim_proxy_connections_refused_total", &[("reason", "tls")]) == Some(1.0)
    })
    .await;
    assert_eq!(
        families(&m),
        [
            pair("scim_proxy_requests", "counter"),
            pair("scim_proxy_request_duration_seconds", "histogram"),
            pair("scim_proxy_upstream_duration_seconds", "histogram"),
            pair("scim_proxy_upstream_failures", "counter"),
            pair("scim_proxy_in_flight_requests", "gauge"),
            pair("scim_proxy_token_expiry_seconds", "gauge"),
            pair("scim_proxy_token_expiry_stale", "gauge"),
            pair("scim_proxy_reloads", "counter"),
            pair("scim_proxy_connections_refused", "counter"),
            pair("scim_proxy_open_connections", "gauge"),
            pair("scim_proxy_log_records_dropped", "counter"),
        ],
        "\n{}",
        m.text
    );
    // The sample names, with their labels.
    let mut names: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for s in &m.samples {
        names
            .entry(s.name.as_str())
            .or_default()
            .extend(s.labels.keys().map(String::as_str));
    }
    let want: BTreeMap<&str, BTreeSet<&str>> = [
        (
            "scim_proxy_requests_total",
            &["route", "client", "op", "status_class"][..],
        ),
        (
            "scim_proxy_request_duration_seconds_bucket",
            &["route", "le"],
        ),
        ("scim_proxy_request_duration_seconds_sum", &["route"]),
        ("scim_proxy_request_duration_seconds_count", &["route"]),
        (
            "scim_proxy_upstream_duration_seconds_bucket",
            &["route", "le"],
        ),
        ("scim_proxy_upstream_duration_seconds_sum", &["route"]),
        ("scim_proxy_upstream_duration_seconds_count", &["route"]),
        ("scim_proxy_upstream_failures_total", &["route", "kind"]),
        ("scim_proxy_in_flight_requests", &[]),
        ("scim_proxy_token_expiry_seconds", &["route"]),
        ("scim_proxy_token_expiry_stale", &["route"]),
        ("scim_proxy_reloads_total", &["result"]),
        ("scim_proxy_connections_refused_total", &["reason"]),
        ("scim_proxy_open_connections", &[]),
        ("scim_proxy_log_records_dropped_total", &["sink"]),
    ]
    .into_iter()
    .map(|(n, l)| (n, l.iter().copied().collect()))
    .collect();
    assert_eq!(names, want, "\n{}", m.text);
    // Status classes as exposed.
    let classes: BTreeSet<&str> = m
        .series("scim_proxy_requests_total")
        .iter()
        .map(|s| s.labels["status_class"].as_str())
        .collect();
    assert_eq!(classes, BTreeSet::from(["2xx", "5xx"]));
    eprintln!("--- /metrics ---\n{}", m.text);
    p.stop().await;
}

/// The body is the OpenMetrics 1.0 text format (`# EOF`, counters typed without `_total`); its
/// Content-Type must say so, or Prometheus parses it with the classic 0.0.4 parser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_content_type_matches_the_exposition_format() {
    let p = Builder::new().admin().start().await;
    let admin = p.running().admin_addr.expect("admin");
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
    let a = plain_get(admin, "/metrics").await.expect("GET /metrics");
    let body = String::from_utf8_lossy(&a.body).into_owned();
    p.stop().await;
    assert!(body.ends_with("# EOF\n"), "OpenMetrics body:\n{body}");
    assert!(
        body.contains("# TYPE scim_proxy_requests counter\nscim_proxy_requests_total{"),
        "{body}"
    );
    assert_eq!(
        a.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
}

/// A request waiting for a slow upstream is being served: it must count as in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_counts_a_request_waiting_on_the_upstream() {
    let p = Builder::new().admin().start().await;
    let admin = p.running().admin_addr.expect("admin");
    p.upstream(0)
        .push_override(canned(200, empty_list(), Duration::from_secs(3)));
    let client = p.client.clone();
    let slow = tokio::spawn(async move {
        client
            .send(Method::GET, "/SCIM/v2/Users", Some(OKTA), None)
            .await
    });
    let deadline = Instant::now() + WAIT;
    while p.upstream(0).requests().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the slow request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let during = scrape(admin).await;
    let a = bounded("slow request", slow)
        .await
        .expect("task")
        .expect("answer");
    assert_eq!(a.status, StatusCode::OK);
    scrape_until(admin, "in_flight back to 0", |m| {
        m.value("scim_proxy_in_flight_requests", &[]) == 0.0
    })
    .await;
    p.stop().await;
    assert_eq!(
        during.value("scim_proxy_in_flight_requests", &[]),
        1.0,
        "while the upstream was answering"
    );
}

/// Every series whose labels are known from the config is exported at 0 from the first scrape, so
/// `increase(...[5m]) > 0` fires on the first event; a route added by a reload gets its series then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_series_exist_at_zero_from_the_first_scrape_and_for_routes_added_by_reload() {
    let mut prepared = Builder::new()
        .admin()
        .routes(vec![
            RouteSpec::new("main").hosts(&["addon-a.example"]),
            RouteSpec::new("added").hosts(&["addon-b.example"]),
        ])
        .prepare()
        .await;
    // Serve without the second route first (the last table); the reload below brings it in.
    let full = prepared.toml.clone();
    let added_at = full
        .find("\n[[routes]]\nname = \"added\"")
        .expect("the added route's table");
    prepared.edit_config(&full, &format!("{}\n", &full[..added_at]));
    let p = prepared.start().await;
    let admin = p.running().admin_addr.expect("admin");

    let route_series_at_zero = |m: &Exposition, route: &str| {
        for kind in ["connect", "tls", "timeout", "protocol", "5xx", "auth"] {
            assert_eq!(
                m.get(
                    "scim_proxy_upstream_failures_total",
                    &[("route", route), ("kind", kind)]
                ),
                Some(0.0),
                "{route}/{kind}\n{}",
                m.text
            );
        }
        for histogram in [
            "scim_proxy_request_duration_seconds_count",
            "scim_proxy_upstream_duration_seconds_count",
        ] {
            assert_eq!(
                m.get(histogram, &[("route", route)]),
                Some(0.0),
                "{histogram} {route}\n{}",
                m.text
            );
        }
    };
    let first = scrape(admin).await;
    route_series_at_zero(&first, "main");
    for result in ["ok", "failed"] {
        assert_eq!(
            first.get("scim_proxy_reloads_total", &[("result", result)]),
            Some(0.0),
            "\n{}",
            first.text
        );
    }
    for reason in ["max_connections", "allow_cidrs", "proxy_protocol", "tls"] {
        assert_eq!(
            first.get(
                "scim_proxy_connections_refused_total",
                &[("reason", reason)]
            ),
            Some(0.0),
            "\n{}",
            first.text
        );
    }
    assert!(
        !first.text.contains("route=\"added\""),
        "not configured yet:\n{}",
        first.text
    );

    std::fs::write(p.config_path(), &full).expect("write config");
    p.running().reload().expect("reload with the added route");
    let after = scrape(admin).await;
    route_series_at_zero(&after, "added");
    route_series_at_zero(&after, "main");
    assert_eq!(
        after.value("scim_proxy_reloads_total", &[("result", "ok")]),
        1.0
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_are_counted_ok_and_failed() {
    let p = Builder::new().admin().start().await;
    let admin = p.running().admin_addr.expect("admin");
    let idle = scrape(admin).await;
    for result in ["ok", "failed"] {
        assert_eq!(
            idle.get("scim_proxy_reloads_total", &[("result", result)]),
            Some(0.0),
            "\n{}",
            idle.text
        );
    }
    p.running().reload().expect("a good reload");
    std::fs::write(p.config_path(), "[listen\naddr = ").unwrap();
    assert!(p.running().reload().is_err());
    std::fs::write(
        p.config_path(),
        p.prepared.toml.replace("main.token", "missing.token"),
    )
    .unwrap();
    assert!(p.running().reload().is_err());
    std::fs::write(p.config_path(), &p.prepared.toml).unwrap();
    p.running().reload().expect("fixed");
    let m = scrape(admin).await;
    assert_eq!(
        m.value("scim_proxy_reloads_total", &[("result", "ok")]),
        2.0
    );
    assert_eq!(
        m.value("scim_proxy_reloads_total", &[("result", "failed")]),
        2.0
    );
    assert_eq!(m.series("scim_proxy_reloads_total").len(), 2);
    // Still serving on the good config.
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_counted_by_reason() {
    // 127.0.0.1 is outside allow_cidrs: closed before TLS; the admin listener is not subject to it.
    let p = Builder::new()
        .admin()
        .listen_extra("allow_cidrs = [\"10.0.0.0/8\"]\n")
        .start()
        .await;
    let admin = p.running().admin_addr.expect("admin");
    for _ in 0..3 {
        let r = raw_tls_exchange(
            p.addr,
            p.ca_pem(),
            b"GET /SCIM/v2/Users HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(r.is_err(), "{r:?}");
    }
    let m = scrape_until(admin, "3 refusals", |m| {
        m.get(
            "scim_proxy_connections_refused_total",
            &[("reason", "allow_cidrs")],
        ) == Some(3.0)
    })
    .await;
    let counted: Vec<&str> = m
        .series("scim_proxy_connections_refused_total")
        .iter()
        .filter(|s| s.value > 0.0)
        .map(|s| s.labels["reason"].as_str())
        .collect();
    assert_eq!(counted, ["allow_cidrs"], "\n{}", m.text);
    assert!(p.upstream(0).requests().is_empty());
    p.stop().await;

    // Plain HTTP on the TLS port: a failed handshake.
    let p = Builder::new().admin().start().await;
    let admin = p.running().admin_addr.expect("admin");
    let r = plain_get(p.addr, "/SCIM/v2/Users").await;
    assert!(
        r.is_err() || r.as_ref().is_ok_and(|a| a.status != StatusCode::OK),
        "{r:?}"
    );
    scrape_until(admin, "a tls refusal", |m| {
        m.get("scim_proxy_connections_refused_total", &[("reason", "tls")]) == Some(1.0)
    })
    .await;
    p.stop().await;
}

// ================================================================================ 6. readiness

async fn readyz(admin: SocketAddr) -> (u16, Value) {
    let a = plain_get(admin, "/readyz").await.expect("GET /readyz");
    assert_eq!(a.header("content-type"), Some("application/json"));
    (a.status.as_u16(), a.json())
}

async fn wait_ready(admin: SocketAddr) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = readyz(admin).await;
        if status == 200 {
            assert_eq!(body, json!({"status": "ready"}));
            return;
        }
        assert!(Instant::now() < deadline, "/readyz: {status} {body}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn route_expiring(name: &str, at: SystemTime) -> RouteSpec {
    let mut r = RouteSpec::new(name);
    r.extra = format!("token_expires = \"{}\"\n", rfc3339(at));
    r
}

const DAY: Duration = Duration::from_secs(86_400);

/// The rotation trap: the admin writes a new token into token_file (as the README says) while
/// token_expires still holds the old token's date. The proxy stays ready, uses the new token, and
/// says the date belongs to the previous token until token_expires is updated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_under_an_old_token_expires_stays_ready_and_asks_for_the_new_date() {
    let old_date = rfc3339(SystemTime::now() - DAY);
    let p = Builder::new()
        .admin()
        .routes(vec![route_expiring("main", SystemTime::now() - DAY)])
        .start()
        .await;
    let admin = p.running().admin_addr.expect("admin");
    let (status, body) = readyz(admin).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["warnings"][0].as_str().unwrap().contains("expired"),
        "{body}"
    );

    let new = format!("v2-rotated-{}", uuid::Uuid::new_v4().simple());
    p.upstream(0).set_tokens(vec![new.clone()]);
    write_private(p.dir(), "main.token", &format!("{new}\n"));
    p.running().reload().expect("reload");
    let (status, body) = readyz(admin).await;
    assert_eq!(status, 200, "{body}");
    let warnings = body["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{body}");
    let warning = warnings[0].as_str().unwrap();
    assert!(
        warning.contains("token rotated; update token_expires"),
        "{warning}"
    );
    assert!(!warning.contains(&new), "{warning}");
    let m = scrape(admin).await;
    assert_eq!(
        m.value("scim_proxy_token_expiry_stale", &[("route", "main")]),
        1.0
    );
    assert!(
        !m.text.contains("scim_proxy_token_expiry_seconds{"),
        "the old date says nothing about the new token:\n{}",
        m.text
    );
    // The new token is the one forwarded, and the IdP sees the upstream's answer.
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);

    // The admin updates the date: the warning goes, the gauge follows the new date.
    let config = std::fs::read_to_string(p.config_path()).unwrap();
    let new_date = rfc3339(SystemTime::now() + 90 * DAY);
    assert!(config.contains(&old_date), "{config}");
    std::fs::write(p.config_path(), config.replace(&old_date, &new_date)).unwrap();
    p.running().reload().expect("reload");
    let (status, body) = readyz(admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"status": "ready"}));
    let m = scrape(admin).await;
    assert_eq!(
        m.value("scim_proxy_token_expiry_stale", &[("route", "main")]),
        0.0
    );
    assert!(m.value("scim_proxy_token_expiry_seconds", &[("route", "main")]) > 89.0 * 86_400.0);
    p.stop().await;
}

/// `check` refuses a token_expires in the past (naming the key) and warns inside token_warn_days.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_exits_non_zero_for_a_past_token_expires_and_warns_inside_token_warn_days() {
    let prepared = Builder::new()
        .routes(vec![
            route_expiring("past", SystemTime::now() - DAY),
            route_expiring("soon", SystemTime::now() + 3 * DAY).hosts(&["addon-a.example"]),
        ])
        .prepare()
        .await;
    let config = prepared.config_path.to_str().unwrap().to_string();
    let out = run_cli(&["check", "--config", &config], b"", &[], STEP);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("routes[0].token_expires: in the past"),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning:")
            && stderr.contains("routes[1].token_expires")
            && stderr.contains("in 2 days"),
        "{stderr}"
    );
    prepared.shutdown().await;

    let prepared = Builder::new()
        .routes(vec![route_expiring("soon", SystemTime::now() + 3 * DAY)])
        .prepare()
        .await;
    let config = prepared.config_path.to_str().unwrap().to_string();
    let out = run_cli(&["check", "--config", &config], b"", &[], STEP);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("routes[0].token_expires"), "{stderr}");
    prepared.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_200_with_a_valid_certificate_and_unexpired_tokens() {
    let p = Builder::new()
        .admin()
        .routes(vec![route_expiring("main", SystemTime::now() + 30 * DAY)])
        .start()
        .await;
    let admin = p.running().admin_addr.expect("admin");
    wait_ready(admin).await;
    let h = plain_get(admin, "/healthz").await.expect("healthz");
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.json(), json!({"status": "ok"}));
    let left = scrape(admin)
        .await
        .value("scim_proxy_token_expiry_seconds", &[("route", "main")]);
    assert!(
        (30.0 * 86_400.0 - 120.0..=30.0 * 86_400.0 + 1.0).contains(&left),
        "{left}"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_warns_of_a_route_whose_token_is_past_token_expires_and_requests_still_go_through() {
    let now = SystemTime::now();
    let p = Builder::new()
        .admin()
        .routes(vec![
            route_expiring("expired", now - 2 * DAY),
            route_expiring("current", now + 30 * DAY).hosts(&["addon-a.example"]),
            RouteSpec::new("unset").hosts(&["addon-b.example"]),
        ])
        .start()
        .await;
    let admin = p.running().admin_addr.expect("admin");
    // A warning, not unreadiness: every replica would leave the Service at once otherwise.
    let (status, body) = readyz(admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert!(body.get("problems").is_none(), "{body}");
    let warnings = body["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{body}");
    let warning = warnings[0].as_str().unwrap();
    for part in [
        "route expired",
        "token_expires",
        "expired.token",
        "update token_expires",
    ] {
        assert!(warning.contains(part), "{warning:?} lacks {part:?}");
    }
    for s in p.secrets() {
        assert!(!body.to_string().contains(&s));
    }
    assert_eq!(
        plain_get(admin, "/healthz").await.unwrap().status,
        StatusCode::OK
    );

    // Forwarded all the same: the upstream decides.
    let a = send(
        &p,
        Some(OKTA),
        Some("past-1"),
        Method::GET,
        "/SCIM/v2/Users",
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let seen = upstream_saw(p.upstream(0), "past-1");
    assert_eq!(
        seen.headers.get("authorization").unwrap().to_str().unwrap(),
        bearer(p.v2(0))
    );
    assert_eq!(record(p.dir(), "past-1").await["route"], "expired");

    let m = scrape(admin).await;
    let expired = m.value("scim_proxy_token_expiry_seconds", &[("route", "expired")]);
    assert!(
        (-2.0 * 86_400.0 - 120.0..=-2.0 * 86_400.0 + 1.0).contains(&expired),
        "{expired}"
    );
    let current = m.value("scim_proxy_token_expiry_seconds", &[("route", "current")]);
    assert!(current > 29.0 * 86_400.0, "{current}");
    assert_eq!(
        m.get("scim_proxy_token_expiry_seconds", &[("route", "unset")]),
        None
    );
    p.stop().await;
}

/// An expired serving certificate cannot be loaded (by design), so it is proved three ways: `check`
/// refuses it with a clear message, a reload to it is refused while the old certificate keeps serving,
/// and the readiness verdict of the real loaded snapshot names the certificate once its clock passes
/// the certificate's notAfter (what `/readyz` reports when a running certificate expires).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_serving_certificate_is_refused_and_readiness_names_it() {
    let mut p = Builder::new().admin().start().await;
    let admin = p.running().admin_addr.expect("admin");
    wait_ready(admin).await;
    let expired = p.prepared.pki.issue_expired(&["localhost"]).expect("cert");
    write_file(p.dir(), "expired.crt", &expired.cert_pem);
    write_private(p.dir(), "expired.key", &expired.key_pem);
    let with_expired = p.prepared.toml.replace(
        "cert = \"proxy.crt\"\nkey = \"proxy.key\"",
        "cert = \"expired.crt\"\nkey = \"expired.key\"",
    );
    assert_ne!(with_expired, p.prepared.toml);
    let other = write_file(p.dir(), "expired.toml", &with_expired);

    let out = run_cli(
        &["check", "--config", other.to_str().unwrap()],
        b"",
        &[],
        STEP,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("listen.cert") && stderr.contains("the certificate expired on"),
        "{stderr}"
    );

    p.prepared.edit_config(
        "cert = \"proxy.crt\"\nkey = \"proxy.key\"",
        "cert = \"expired.crt\"\nkey = \"expired.key\"",
    );
    let problems = p
        .running()
        .reload()
        .expect_err("an expired certificate must not load");
    assert!(
        problems
            .0
            .iter()
            .any(|x| x.key == "listen.cert" && x.reason.contains("expired")),
        "{problems}"
    );
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
    wait_ready(admin).await;
    let m = scrape(admin).await;
    assert_eq!(
        m.value("scim_proxy_reloads_total", &[("result", "failed")]),
        1.0
    );

    let snapshot = p.running().shared.state.load_full();
    let info = snapshot
        .cert_info
        .clone()
        .expect("serving certificate info");
    assert!(
        scim_proxy::state::readiness::readiness_problems(&snapshot, true, SystemTime::now())
            .is_empty()
    );
    let later = info.not_after + Duration::from_secs(1);
    let problems = scim_proxy::state::readiness::readiness_problems(&snapshot, true, later);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("serving certificate") && problems[0].contains("expired"),
        "{problems:?}"
    );
    p.stop().await;
}

/// SIGTERM's drain as the README describes it: `/readyz` turns 503 while in-flight requests finish,
/// and `/healthz` (liveness) keeps answering 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_503_and_healthz_stays_200_while_draining() {
    let p = Builder::new()
        .admin()
        .limit("shutdown_grace", "\"10s\"")
        .start()
        .await;
    let admin = p.running().admin_addr.expect("admin");
    wait_ready(admin).await;
    p.upstream(0)
        .push_override(canned(200, empty_list(), Duration::from_secs(2)));
    let client = p.client.clone();
    let slow = tokio::spawn(async move {
        client
            .send(Method::GET, "/SCIM/v2/Users", Some(OKTA), None)
            .await
    });
    let deadline = Instant::now() + WAIT;
    while p.upstream(0).requests().is_empty() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.running().shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ready = plain_get(admin, "/readyz").await;
    let health = plain_get(admin, "/healthz").await;
    let a = bounded("slow request", slow)
        .await
        .expect("task")
        .expect("answer");
    assert_eq!(a.status, StatusCode::OK, "the in-flight request finishes");
    p.stop().await;
    let ready = ready.expect("/readyz answers during the drain");
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&ready.body).contains("not accepting"));
    assert_eq!(
        health.expect("/healthz answers during the drain").status,
        StatusCode::OK
    );
}

// ================================================================================ 7. token lifecycle

fn bearer_seen(r: &scim_proxy::lab::upstream::RecordedRequest) -> String {
    r.headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Sends GETs until one reaches the upstream with `token` (bounded); returns the statuses seen.
async fn until_upstream_sees(p: &TestProxy, token: &str, tag: &str) -> Vec<u16> {
    let up = p.upstream(0);
    let deadline = Instant::now() + WAIT;
    let mut statuses = Vec::new();
    for n in 0.. {
        let rid = format!("{tag}-{n}");
        let a = send(
            p,
            Some(OKTA),
            Some(&rid),
            Method::GET,
            "/SCIM/v2/Users",
            None,
        )
        .await;
        statuses.push(a.status.as_u16());
        if a.status == StatusCode::OK && bearer_seen(&upstream_saw(up, &rid)) == bearer(token) {
            return statuses;
        }
        assert!(
            Instant::now() < deadline,
            "the new token was not used within {WAIT:?}: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_token_file_is_used_without_restart_and_no_401_reaches_the_idp_once_settled() {
    let mut b = Builder::new().admin();
    b.watch = true;
    let mut prepared = b.prepare().await;
    prepared.edit_config("watch = true\n", "watch = true\ninterval = \"200ms\"\n");
    let p = prepared.start().await;
    let admin = p.running().admin_addr.expect("admin");
    let up = p.upstream(0).clone();
    let old = p.v2(0).to_owned();
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);

    // The recommended order: the new token is live upstream before the file changes.
    let next = format!("v2-next-{}", uuid::Uuid::new_v4().simple());
    up.set_tokens(vec![old.clone(), next.clone()]);
    write_private(p.dir(), "main.token", &format!("{next}\n"));
    let statuses = until_upstream_sees(&p, &next, "overlap").await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    up.set_tokens(vec![next.clone()]);
    for i in 0..10 {
        let rid = format!("after-overlap-{i}");
        let a = send(
            &p,
            Some(OKTA),
            Some(&rid),
            Method::GET,
            "/SCIM/v2/Users",
            None,
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{rid}");
        assert_eq!(bearer_seen(&upstream_saw(&up, &rid)), bearer(&next));
    }

    // Regenerated in Netskope: the old token dies at once, the file follows a moment later.
    let third = format!("v2-third-token-{}", uuid::Uuid::new_v4().simple());
    up.set_tokens(vec![third.clone()]);
    write_private(p.dir(), "main.token", &format!("{third}\n"));
    until_upstream_sees(&p, &third, "hard").await;
    for i in 0..10 {
        let rid = format!("settled-{i}");
        let a = send(
            &p,
            Some(ENTRA),
            Some(&rid),
            Method::GET,
            "/SCIM/v2/Users",
            None,
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "no 401 once settled: {rid}");
        assert_eq!(bearer_seen(&upstream_saw(&up, &rid)), bearer(&third));
        assert_eq!(record(p.dir(), &rid).await["upstream_status"], 200);
    }
    let m = scrape(admin).await;
    assert!(
        m.value("scim_proxy_reloads_total", &[("result", "ok")]) >= 2.0,
        "{}",
        m.text
    );
    let raw = std::fs::read_to_string(p.dir().join("traffic.log")).unwrap();
    for t in [&old, &next, &third] {
        assert!(!raw.contains(t.as_str()));
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_several_inbound_tokens_accepts_each_then_drops_a_removed_one() {
    const OKTA_NEXT: &str = "okta-next-scim-token-e09b";
    let mut prepared = Builder::new().prepare().await;
    let old_line = format!("token_sha256 = \"{}\"\n", sha256_hex(OKTA.as_bytes()));
    let both = format!(
        "{old_line}additional_token_sha256 = [\"{}\"]\n",
        sha256_hex(OKTA_NEXT.as_bytes())
    );
    prepared.edit_config(&old_line, &both);
    let mut p = prepared.start().await;
    for (rid, token, client) in [
        ("multi-old", OKTA, "okta"),
        ("multi-next", OKTA_NEXT, "okta"),
        ("multi-entra", ENTRA, "entra"),
    ] {
        let a = send(
            &p,
            Some(token),
            Some(rid),
            Method::GET,
            "/SCIM/v2/Users",
            None,
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{rid}");
        let r = record(p.dir(), rid).await;
        assert_eq!(r["client"], client, "{r}");
        assert_eq!(r["auth"], "ok");
        assert_eq!(
            bearer_seen(&upstream_saw(p.upstream(0), rid)),
            bearer(p.v2(0))
        );
    }
    // Okta now sends the new token: the old hash goes.
    p.prepared.edit_config(
        &both,
        &format!("token_sha256 = \"{}\"\n", sha256_hex(OKTA_NEXT.as_bytes())),
    );
    p.running().reload().expect("reload");
    let a = send(
        &p,
        Some(OKTA),
        Some("multi-old-2"),
        Method::GET,
        "/SCIM/v2/Users",
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        record(p.dir(), "multi-old-2").await["auth"],
        "unknown-token"
    );
    let a = send(
        &p,
        Some(OKTA_NEXT),
        Some("multi-next-2"),
        Method::GET,
        "/SCIM/v2/Users",
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(record(p.dir(), "multi-next-2").await["client"], "okta");
    p.stop().await;
}

const AUTH_BURST: &str = "the upstream keeps refusing the REST API v2 token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_upstream_401s_is_explained_once_in_the_log() {
    let prepared = Builder::new().prepare().await;
    let served = Served::start(&prepared.config_path, &prepared.ca_pem).await;
    let up = &prepared.upstreams[0];
    for _ in 0..3 {
        up.push_override(canned(
            401,
            scim_error_body(401, "", "Invalid or expired API token"),
            Duration::ZERO,
        ));
    }
    for i in 0..3 {
        let a = served
            .get("/SCIM/v2/Users", OKTA, &format!("burst-{i}"), None)
            .await;
        assert_eq!(
            a.status,
            StatusCode::UNAUTHORIZED,
            "passed through to the IdP"
        );
    }
    let hits = served
        .wait_events("the 401 burst explained", 1, |e| {
            message(e).contains(AUTH_BURST)
        })
        .await;
    let e = &hits[0];
    assert_eq!(e["level"], "ERROR", "{e}");
    assert_eq!(e["route"], "main");
    assert_eq!(e["status"], 401);
    assert_eq!(e["count"], 3);
    let text = message(e);
    for cause in [
        "expired or was revoked",
        "SCIM Users/Groups",
        "egress IP is not on the tenant's IP allowlist",
    ] {
        assert!(text.contains(cause), "{text:?} lacks {cause:?}");
    }
    let r = record(prepared.dir.path(), "burst-2").await;
    assert_eq!(r["upstream_status"], 401);
    assert_eq!(r["detail"], "Invalid or expired API token");

    // More refusals (403 too) within the quiet period: not repeated.
    for _ in 0..3 {
        up.push_override(canned(
            403,
            scim_error_body(403, "", "Forbidden"),
            Duration::ZERO,
        ));
    }
    for i in 3..6 {
        let a = served
            .get("/SCIM/v2/Users", OKTA, &format!("burst-{i}"), None)
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
    }
    record(prepared.dir.path(), "burst-5").await;
    let (_, stderr) = served.stop().await;
    assert_eq!(stderr.matches(AUTH_BURST).count(), 1, "{stderr}");
    for t in [&prepared.v2_tokens[0], &OKTA.to_owned()] {
        assert!(!stderr.contains(t.as_str()), "a token on stderr");
    }
    prepared.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_logs_an_error_on_every_request_and_a_soon_expiring_one_warns() {
    let now = SystemTime::now();
    let mut later = route_expiring("later", now + 100 * DAY).hosts(&["addon-b.example"]);
    later.extra.push_str("token_warn_days = 14\n");
    let prepared = Builder::new()
        .admin()
        .routes(vec![
            route_expiring("expired", now - 2 * DAY),
            route_expiring("soon", now + 3 * DAY).hosts(&["addon-a.example"]),
            later,
        ])
        .prepare()
        .await;
    let served = Served::start(&prepared.config_path, &prepared.ca_pem).await;
    let admin = served.admin.expect("admin address in the serving line");
    let (status, body) = readyz(admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["warnings"].as_array().map(Vec::len), Some(2), "{body}");

    for i in 0..2 {
        let a = served
            .get("/SCIM/v2/Users", OKTA, &format!("exp-{i}"), None)
            .await;
        assert_eq!(a.status, StatusCode::OK, "still forwarded");
        upstream_saw(&prepared.upstreams[0], &format!("exp-{i}"));
    }
    for (i, host) in ["addon-a.example", "addon-b.example"].iter().enumerate() {
        let a = served
            .get("/SCIM/v2/Users", OKTA, &format!("ok-{i}"), Some(host))
            .await;
        assert_eq!(a.status, StatusCode::OK);
    }
    let past = |e: &Value| message(e).contains("past token_expires");
    let errors = served.wait_events("an error per request", 2, past).await;
    for e in &errors {
        assert_eq!(e["level"], "ERROR", "{e}");
        assert_eq!(e["route"], "expired");
        assert!(message(e).contains("expired.token"), "{e}");
    }
    let warnings = served
        .wait_events("the soon-expiring warning", 1, |e| {
            message(e).contains("expires soon")
        })
        .await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["level"], "WARN");
    assert_eq!(warnings[0]["route"], "soon");
    assert_eq!(warnings[0]["days_left"], 2, "{}", warnings[0]);

    let m = scrape(admin).await;
    assert!(m.value("scim_proxy_token_expiry_seconds", &[("route", "expired")]) < 0.0);
    let soon = m.value("scim_proxy_token_expiry_seconds", &[("route", "soon")]);
    assert!(
        (2.9 * 86_400.0..=3.0 * 86_400.0 + 1.0).contains(&soon),
        "{soon}"
    );
    let (_, stderr) = served.stop().await;
    assert_eq!(stderr.matches("past token_expires").count(), 2, "{stderr}");
    assert_eq!(stderr.matches("expires soon").count(), 1, "{stderr}");
    prepared.shutdown().await;
}

// ================================================================================ 8. report

/// `refused` when the proxy answered a client fault itself, as the report counts outcomes.
fn outcome(r: &Value) -> &'static str {
    let status = r["status"].as_u64().unwrap();
    match status {
        200..=299 => "2xx",
        400..=499 if r.get("upstream_status").is_none() => "refused",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

fn outcomes_json(records: &[&Value]) -> Value {
    let n = |o: &str| records.iter().filter(|r| outcome(r) == o).count();
    json!({
        "requests": records.len(),
        "2xx": n("2xx"),
        "4xx": n("4xx"),
        "5xx": n("5xx"),
        "refused": n("refused"),
        "other": n("other"),
    })
}

/// `scim-proxy report … | head`: a reader that closes the pipe early is no failure.
#[test]
fn report_into_a_closed_pipe_exits_quietly() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    // 3,000 IdPs: far more report than a pipe buffer holds.
    let mut log = String::new();
    for i in 0..3000 {
        log.push_str(&format!(
            "{{\"ts\":\"2026-11-23T17:34:54.035Z\",\"request_id\":\"r{i}\",\"route\":\"main\",\"client\":\"idp-{i}\",\"method\":\"GET\",\"path\":\"/SCIM/v2/Users\",\"status\":200,\"upstream_status\":200,\"op\":\"user.list\"}}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("traffic.log");
    std::fs::write(&path, log).unwrap();
    let mut child = Command::new(bin())
        .args(["report", path.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout); // like `head` after its lines
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("report did not exit after its reader went away");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{status:?}: {stderr}");
    assert_eq!(stderr, "", "nothing on stderr for a closed pipe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_summarises_a_mixed_multi_idp_run() {
    let mut prepared = Builder::new()
        .routes(vec![three_idps()])
        .limit("upstream_timeout", "\"2s\"")
        .prepare()
        .await;
    log_config(&mut prepared, "pii_key_file = \"pii.key\"\n");
    write_private(prepared.dir.path(), "pii.key", PII_KEY);
    let p = prepared.start().await;
    let (okta, entra, jc) = (
        Idp::okta(&p, Some(PII_KEY)),
        Idp::entra(&p, Some(PII_KEY)),
        Idp::jumpcloud(&p, Some(PII_KEY)),
    );
    okta_flow(&okta).await;
    entra_flow(&entra).await;
    jumpcloud_flow(&jc).await;
    // Failures: Okta assigns two users that already exist in the tenant.
    for who in ["dup.one@example.com", "dup.two@example.com"] {
        let body = okta_user(who, true);
        okta.step(
            Method::POST,
            "/SCIM/v2/Users",
            Some(body.clone()),
            201,
            want("User", "user.create").created().subject(who),
        )
        .await;
        okta.step(
            Method::POST,
            "/SCIM/v2/Users",
            Some(body),
            409,
            want("User", "user.create").subject(who),
        )
        .await;
    }
    // Netskope busy for Entra twice.
    for _ in 0..2 {
        p.upstream(0).push_override(canned(
            503,
            scim_error_body(503, "", "Service temporarily unavailable, retry later"),
            Duration::ZERO,
        ));
        entra
            .step(
                Method::GET,
                "/SCIM/v2/Users?filter=userName+eq+%22busy%40contoso.com%22",
                None,
                503,
                want("User", "user.lookup").subject("busy@contoso.com"),
            )
            .await;
    }
    // JumpCloud waits past upstream_timeout once.
    p.upstream(0)
        .push_override(canned(200, empty_list(), Duration::from_secs(4)));
    let a = send(
        &p,
        Some(JUMPCLOUD),
        Some("jumpcloud-timeout"),
        Method::GET,
        "/SCIM/v2/Groups",
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT);
    // An IdP still configured with a token the proxy does not know.
    for i in 0..2 {
        let a = send(
            &p,
            Some("stale-idp-token-0b7e"),
            Some(&format!("stale-{i}")),
            Method::GET,
            "/SCIM/v2/Users",
            None,
        )
        .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
    let sent = (okta.seq.get() + entra.seq.get() + jc.seq.get()) as usize + 3;
    let records = records_at_least(p.dir(), sent).await;
    assert_eq!(records.len(), sent);
    let log = p.dir().join("traffic.log");
    let log_arg = log.to_str().unwrap();

    let out = run_cli(&["report", "--json", log_arg], b"", &[], STEP);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("--json parses");
    assert_eq!(summary["records"], sent);
    assert_eq!(summary["skipped_lines"], 0);
    let idps = summary["idps"].as_array().expect("idps");
    let names: Vec<&str> = idps.iter().map(|i| i["idp"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "main/(unauthenticated)",
            "main/entra",
            "main/jumpcloud",
            "main/okta"
        ]
    );
    for idp in idps {
        let client = idp["client"].as_str();
        let mine: Vec<&Value> = records
            .iter()
            .filter(|r| r["client"].as_str() == client)
            .collect();
        let ctx = format!("{}", idp["idp"]);
        assert_eq!(idp["outcomes"], outcomes_json(&mine), "{ctx}");
        let first = mine
            .iter()
            .map(|r| r["ts"].as_str().unwrap())
            .min()
            .unwrap();
        let last = mine
            .iter()
            .map(|r| r["ts"].as_str().unwrap())
            .max()
            .unwrap();
        assert_eq!(idp["first_seen"], first, "{ctx}");
        assert_eq!(idp["last_seen"], last, "{ctx}");
        let ops: BTreeSet<&str> = mine
            .iter()
            .map(|r| r["op"].as_str().unwrap_or("-"))
            .collect();
        assert_eq!(idp["ops"].as_array().unwrap().len(), ops.len(), "{ctx}");
        for op in idp["ops"].as_array().unwrap() {
            let name = op["op"].as_str().unwrap();
            let of_op: Vec<&Value> = mine
                .iter()
                .copied()
                .filter(|r| r["op"].as_str().unwrap_or("-") == name)
                .collect();
            let mut want = outcomes_json(&of_op);
            want["op"] = json!(name);
            assert_eq!(op, &want, "{ctx}");
        }
    }
    let by_name = |n: &str| idps.iter().find(|i| i["idp"] == n).unwrap();
    // Failures grouped by upstream reason, with the latest as the example.
    let f = by_name("main/okta")["failures"].as_array().unwrap().clone();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0]["status"], 409);
    assert_eq!(f[0]["by"], "upstream");
    assert_eq!(f[0]["scimType"], "uniqueness");
    assert_eq!(f[0]["count"], 2);
    assert_eq!(f[0]["detail"], "User with userName \"h:…\" already exists");
    assert_eq!(f[0]["example"]["op"], "user.create");
    assert_eq!(
        f[0]["example"]["subject"],
        json!(pii_hash(PII_KEY, "dup.two@example.com"))
    );
    let f = by_name("main/entra")["failures"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(
        (f[0]["status"].clone(), f[0]["count"].clone()),
        (json!(503), json!(2))
    );
    assert_eq!(
        f[0]["detail"],
        "Service temporarily unavailable, retry later"
    );
    let f = by_name("main/jumpcloud")["failures"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0]["status"], 504);
    assert_eq!(f[0]["by"], "proxy");
    assert_eq!(f[0]["error"], "upstream-timeout");
    assert_eq!(f[0]["example"]["request_id"], "jumpcloud-timeout");
    let f = by_name("main/(unauthenticated)")["failures"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0]["auth"], "unknown-token");
    assert_eq!(f[0]["count"], 2);
    assert_eq!(f[0]["example"]["request_id"], "stale-1");

    // The text form says the same.
    let out = run_cli(&["report", log_arg], b"", &[], STEP);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(&format!(
            "{sent} requests from 3 IdPs, 2 of them unauthenticated\n"
        )),
        "{text}"
    );
    for idp in idps {
        let head = format!("== {}", idp["idp"].as_str().unwrap());
        let at = text
            .find(&head)
            .unwrap_or_else(|| panic!("{head} missing:\n{text}"));
        let section = &text[at..];
        let section = &section[..section[3..].find("\n== ").map_or(section.len(), |i| i + 3)];
        assert!(
            section.contains(&format!(
                "first seen  {}",
                idp["first_seen"].as_str().unwrap()
            )),
            "{section}"
        );
        assert!(
            section.contains(&format!(
                "last seen   {}",
                idp["last_seen"].as_str().unwrap()
            )),
            "{section}"
        );
        let o = &idp["outcomes"];
        assert!(
            section.contains(&format!(
                "requests    {}: {} 2xx, {} 4xx, {} 5xx, {} refused by proxy",
                o["requests"], o["2xx"], o["4xx"], o["5xx"], o["refused"]
            )),
            "{section}"
        );
        for op in idp["ops"].as_array().unwrap() {
            let row: Vec<String> = [
                op["op"].as_str().unwrap().to_owned(),
                op["requests"].to_string(),
                op["2xx"].to_string(),
                op["4xx"].to_string(),
                op["5xx"].to_string(),
                op["refused"].to_string(),
            ]
            .into();
            assert!(
                section
                    .lines()
                    .any(|l| l.split_whitespace().collect::<Vec<_>>() == row),
                "no row {row:?} in\n{section}"
            );
        }
        for f in idp["failures"].as_array().unwrap() {
            assert!(
                section.contains(&format!("{:>4} x {}", f["count"], f["status"])),
                "{section}"
            );
            let e = &f["example"];
            assert!(
                section.contains(&format!(
                    "e.g. {} {}",
                    e["ts"].as_str().unwrap(),
                    e["request_id"].as_str().unwrap()
                )),
                "{section}"
            );
        }
    }
    assert!(
        text.contains("409 from upstream, scimType uniqueness"),
        "{text}"
    );
    assert!(text.contains("504 from proxy (upstream-timeout)"), "{text}");
    assert!(
        text.contains("401 refused by proxy (unauthorized, auth unknown-token)"),
        "{text}"
    );
    eprintln!("--- scim-proxy report ---\n{text}");
    let raw = std::fs::read_to_string(&log).unwrap();
    let sample = raw
        .lines()
        .find(|l| l.contains("\"op\":\"user.create\"") && l.contains("\"status\":201"))
        .expect("a create line");
    eprintln!("--- a traffic log line ---\n{sample}");
    p.stop().await;
}
