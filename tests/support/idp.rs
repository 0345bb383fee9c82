//! The request sequences Okta, Entra ID and JumpCloud really send, and what each step should leave in
//! the traffic log.

use std::cell::Cell;

use bytes::Bytes;
use http::Method;
use scim_proxy::lab::client::Answer;
use serde_json::{Value, json};

use super::*;

/// What a record's SCIM reading must say.
#[derive(Clone, Debug)]
pub enum Id {
    None,
    Is(String),
    /// The `id` of the resource in the answer's body (a create).
    FromAnswer,
}

#[derive(Clone, Debug)]
pub struct Want {
    pub resource: &'static str,
    pub op: &'static str,
    pub id: Id,
    pub subject: Option<String>,
}

pub fn want(resource: &'static str, op: &'static str) -> Want {
    Want {
        resource,
        op,
        id: Id::None,
        subject: None,
    }
}

impl Want {
    pub fn id(mut self, id: &str) -> Want {
        self.id = Id::Is(id.to_owned());
        self
    }
    pub fn created(mut self) -> Want {
        self.id = Id::FromAnswer;
        self
    }
    pub fn subject(mut self, s: &str) -> Want {
        self.subject = Some(s.to_owned());
        self
    }
}

/// One IdP talking to the proxy: each step sends a request with the IdP's token, headers and an
/// `X-Request-Id` of its own, then checks its traffic record.
pub struct Idp<'a> {
    pub p: &'a TestProxy,
    pub client: &'static str,
    pub token: &'static str,
    pub headers: &'static [(&'static str, &'static str)],
    /// `None`: `pii = "plain"`; `Some(key)`: `pii = "hash"` with this key.
    pub hash_key: Option<&'static str>,
    pub seq: Cell<u32>,
}

/// Okta's headers as captured from a real client (domain.md §2).
pub const OKTA_HEADERS: &[(&str, &str)] = &[
    ("user-agent", "Okta SCIM Client 1.0.0"),
    ("accept-charset", "utf-8"),
    ("accept-encoding", "gzip,deflate"),
];

impl<'a> Idp<'a> {
    pub fn okta(p: &'a TestProxy, hash_key: Option<&'static str>) -> Idp<'a> {
        Idp {
            p,
            client: "okta",
            token: OKTA,
            headers: OKTA_HEADERS,
            hash_key,
            seq: Cell::new(0),
        }
    }

    pub fn entra(p: &'a TestProxy, hash_key: Option<&'static str>) -> Idp<'a> {
        Idp {
            p,
            client: "entra",
            token: ENTRA,
            headers: &[],
            hash_key,
            seq: Cell::new(0),
        }
    }

    pub fn jumpcloud(p: &'a TestProxy, hash_key: Option<&'static str>) -> Idp<'a> {
        Idp {
            p,
            client: "jumpcloud",
            token: JUMPCLOUD,
            headers: &[],
            hash_key,
            seq: Cell::new(0),
        }
    }

    pub fn logged_subject(&self, s: &str) -> Value {
        match self.hash_key {
            None => json!(s),
            Some(k) => json!(pii_hash(k, s)),
        }
    }

    /// Sends the request, asserts the status and the record: client, method, statuses, byte counts,
    /// resource, op, resource_id and subject.
    pub async fn step(
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

pub fn id_of(a: &Answer) -> String {
    a.json()["id"]
        .as_str()
        .expect("id in the answer")
        .to_owned()
}

/// Okta (OIN app): connection test, lookup, create, lookup that finds, read, PUT update, PATCH
/// deactivate and reactivate, Group Push with its path-less replace, member remove + add in one
/// PATCH, group delete. Okta never deletes users.
pub async fn okta_flow(o: &Idp<'_>) {
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
pub async fn entra_flow(e: &Idp<'_>) {
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
pub async fn jumpcloud_flow(j: &Idp<'_>) {
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
