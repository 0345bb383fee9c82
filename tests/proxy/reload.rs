//! Reloads, by `Running::reload`, by SIGHUP and by watching files: rotated tokens and certificates,
//! broken configs that leave the old one serving, new egress settings, and requests in flight.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use rustls_pki_types::{CertificateDer, ServerName};
use scim_proxy::lab::upstream::Override;
use tokio::io::AsyncWriteExt;

use crate::support::*;

/// A prepared config with `[reload] watch = true, interval = "200ms"`.
async fn watching(b: Builder) -> Prepared {
    let mut b = b;
    b.watch = true;
    let mut prepared = b.prepare().await;
    prepared.edit_config("watch = true\n", "watch = true\ninterval = \"200ms\"\n");
    prepared
}

/// The `Authorization` header an upstream recorded ("" when there was none).
fn authorization_of(r: &scim_proxy::lab::upstream::RecordedRequest) -> String {
    header(r, "authorization").unwrap_or_default().to_string()
}

/// The certificate a new TLS connection to the proxy is presented with.
async fn presented(p: &TestProxy) -> CertificateDer<'static> {
    handshake_presenting(p.addr, ServerName::try_from("localhost").unwrap())
        .await
        .1
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
        if a.status == StatusCode::OK && authorization_of(&upstream_saw(up, &rid)) == bearer(token)
        {
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

/// Like `until_upstream_sees`, where a request may reach the upstream twice (a 401, then the
/// resend with a rotated token): its last arrival carries `token`.
async fn until_upstream_last_sees(p: &TestProxy, token: &str, tag: &str) -> Vec<u16> {
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
        let last = up
            .requests()
            .into_iter()
            .rfind(|r| r.headers.get("x-request-id").and_then(|v| v.to_str().ok()) == Some(&rid));
        if a.status == StatusCode::OK && last.is_some_and(|r| authorization_of(&r) == bearer(token))
        {
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
async fn cli_serve_reloads_on_sighup() {
    let prepared = Builder::new().prepare().await;
    let up = prepared.upstreams[0].clone();
    let old = prepared.v2_tokens[0].clone();
    let new = format!("v2-hup-{}", uuid::Uuid::new_v4().simple());
    up.set_tokens(vec![old.clone(), new.clone()]);
    let mut serve = ServeChild::spawn(&prepared.config_path);
    let addr = serve.serving_addr(Duration::from_secs(30)).await;
    let get = |ca: String| async move {
        raw_tls_exchange(
            addr,
            &ca,
            &raw_request(
                "GET",
                "/SCIM/v2/Users",
                "localhost",
                &[("Authorization", &bearer(OKTA))],
            ),
        )
        .await
        .expect("request")
    };
    assert_eq!(get(prepared.ca_pem.clone()).await.status, StatusCode::OK);
    write_private(prepared.dir.path(), "main.token", &format!("{new}\n"));
    serve.signal("HUP");
    // The reload is asynchronous: poll (bounded) until a request carries the new token.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert_eq!(get(prepared.ca_pem.clone()).await.status, StatusCode::OK);
        let last = up.requests().pop().unwrap();
        if header(&last, "authorization") == Some(bearer(&new).as_str()) {
            break;
        }
        assert_eq!(header(&last, "authorization"), Some(bearer(&old).as_str()));
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload:\n{}",
            serve.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        header(&up.requests()[0], "authorization"),
        Some(bearer(&old).as_str())
    );
    serve.signal("TERM");
    let status = serve.exit_status(Duration::from_secs(20)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", serve.stderr());
    prepared.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_picks_up_a_rotated_v2_token() {
    let p = Builder::new().start().await;
    let up = p.upstream(0);
    let old = p.v2(0).to_string();
    let new = format!("v2-rotated-{}", uuid::Uuid::new_v4().simple());
    up.set_tokens(vec![old.clone(), new.clone()]);
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
    assert_eq!(
        header(&up.requests()[0], "authorization"),
        Some(bearer(&old).as_str())
    );
    write_private(p.dir(), "main.token", &format!("{new}\n"));
    // Not before the reload.
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
    assert_eq!(
        header(&up.requests()[1], "authorization"),
        Some(bearer(&old).as_str())
    );
    p.running().reload().expect("reload");
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
    assert_eq!(
        header(&up.requests()[2], "authorization"),
        Some(bearer(&new).as_str())
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_with_a_broken_config_fails_and_the_old_config_keeps_serving() {
    let p = Builder::new().start().await;
    let up = p.upstream(0);
    let old = p.v2(0).to_string();
    let new = format!("v2-rotated-{}", uuid::Uuid::new_v4().simple());
    up.set_tokens(vec![old.clone(), new.clone()]);
    // A new token file and a config with a misplaced key: nothing of it may apply.
    write_private(p.dir(), "main.token", &format!("{new}\n"));
    let broken = p
        .prepared
        .toml
        .replace("[egress]\n", "[egress]\nbindip = \"127.0.0.1\"\n");
    assert_ne!(broken, p.prepared.toml);
    std::fs::write(p.config_path(), &broken).unwrap();
    let problems = p
        .running()
        .reload()
        .expect_err("a broken config must not load");
    assert!(
        problems
            .0
            .iter()
            .any(|x| x.key == "egress.bindip" && x.file == p.config_path()),
        "{problems}"
    );
    let a = p.get("/SCIM/v2/Users", OKTA).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        header(&up.requests()[0], "authorization"),
        Some(bearer(&old).as_str())
    );
    // A config that does not even parse, and one naming a missing token file.
    std::fs::write(p.config_path(), "[listen\naddr = ").unwrap();
    assert!(p.running().reload().is_err());
    std::fs::write(
        p.config_path(),
        p.prepared.toml.replace("main.token", "missing.token"),
    )
    .unwrap();
    let problems = p.running().reload().expect_err("missing token file");
    assert!(
        problems.0.iter().any(|x| x.key == "routes[0].token_file"),
        "{problems}"
    );
    let a = p.get("/SCIM/v2/Users", ENTRA).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        header(&up.requests()[1], "authorization"),
        Some(bearer(&old).as_str())
    );
    // Fixed again: the reload applies.
    std::fs::write(p.config_path(), &p.prepared.toml).unwrap();
    p.running().reload().expect("reload");
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
    assert_eq!(
        header(&up.requests()[2], "authorization"),
        Some(bearer(&new).as_str())
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_a_new_egress_bind_ip() {
    let mut p = Builder::new().bind_ip("127.0.0.7").start().await;
    let up = p.upstream(0).clone();
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
    p.prepared
        .edit_config("bind_ip = \"127.0.0.7\"", "bind_ip = \"127.0.0.8\"");
    p.running().reload().expect("reload");
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
    let peers: Vec<IpAddr> = up.requests().iter().map(|r| r.peer.ip()).collect();
    assert_eq!(
        peers,
        [
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7)),
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 8))
        ]
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_names_follow_a_reloaded_certificate() {
    let p = Builder::new().start().await;
    let renamed = p
        .prepared
        .pki
        .issue(&["localhost", "renamed.example"], &[])
        .expect("certificate");
    write_file(p.dir(), "proxy.crt", &renamed.cert_pem);
    write_private(p.dir(), "proxy.key", &renamed.key_pem);
    p.running().reload().expect("reload");
    let a = create_user_as(&p, "renamed.example", "renamed@x.y").await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let a = create_user_as(&p, "addon-a.example", "old@x.y").await;
    p.assert_error(&a, 421, &["does not serve"]);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_token_file_alone_is_picked_up_without_a_signal() {
    let p = watching(Builder::new()).await.start().await;
    let up = p.upstream(0).clone();
    let old = p.v2(0).to_string();
    let new = format!("v2-watched-rotation-{}", uuid::Uuid::new_v4().simple());
    up.set_tokens(vec![old.clone(), new.clone()]);
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
    assert_eq!(authorization_of(&up.requests()[0]), bearer(&old));
    write_private(p.dir(), "main.token", &format!("{new}\n"));
    // No SIGHUP, no reload call: the watcher notices within a few intervals.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
        let auth = authorization_of(&up.requests().pop().unwrap());
        if auth == bearer(&new) {
            break;
        }
        assert_eq!(auth, bearer(&old));
        assert!(
            Instant::now() < deadline,
            "the token file change was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And it stays: every request from now on carries the new token.
    for _ in 0..3 {
        assert_eq!(p.get("/SCIM/v2/Users", ENTRA).await.status, StatusCode::OK);
        assert_eq!(
            authorization_of(&up.requests().pop().unwrap()),
            bearer(&new)
        );
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_certificate_is_refused_and_the_old_one_keeps_serving() {
    let p = watching(Builder::new()).await.start().await;
    let original_pem = std::fs::read_to_string(p.dir().join("proxy.crt")).unwrap();
    let original = leaf_of(&original_pem);
    assert_eq!(presented(&p).await, original);
    // A connection open across all of this.
    let mut kept = h1_conn(&p).await;

    let other = p
        .prepared
        .pki
        .issue(&["localhost"], &[std::net::IpAddr::V4(Ipv4Addr::LOCALHOST)])
        .unwrap();
    let broken: [(&str, String); 3] = [
        (
            "garbage",
            "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n".into(),
        ),
        ("empty", String::new()),
        ("a certificate for another key", other.cert_pem.clone()),
    ];
    for (what, pem) in broken {
        write_file(p.dir(), "proxy.crt", &pem);
        // The watcher tries (and refuses) within a few intervals; an explicit reload says why.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let problems = p.running().reload().expect_err(what);
        assert!(
            problems
                .0
                .iter()
                .any(|x| x.key == "listen.cert" || x.key == "listen.key"),
            "{what}: {problems}"
        );
        assert_eq!(
            presented(&p).await,
            original,
            "{what}: the old certificate keeps serving"
        );
        kept.write_all(head("GET", "/SCIM/v2/Users", "").as_bytes())
            .await
            .unwrap();
        assert_eq!(
            read_one(&mut kept, STEP).await.unwrap().status,
            StatusCode::OK,
            "{what}"
        );
        assert_still_serves(&p).await;
    }
    // A good new pair applies (the watcher sees it: no explicit reload), and the open connection
    // is not dropped.
    write_private(p.dir(), "proxy.key", &other.key_pem);
    write_file(p.dir(), "proxy.crt", &other.cert_pem);
    let want = leaf_of(&other.cert_pem);
    let deadline = Instant::now() + Duration::from_secs(10);
    while presented(&p).await != want {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    kept.write_all(head("GET", "/SCIM/v2/Users", "").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        read_one(&mut kept, STEP).await.unwrap().status,
        StatusCode::OK
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_during_a_reload_finish_on_the_old_token_and_keep_their_connection() {
    let p = Builder::new().start().await;
    let up = p.upstream(0).clone();
    let old = p.v2(0).to_string();
    let new = format!("v2-in-flight-rotation-{}", uuid::Uuid::new_v4().simple());
    up.set_tokens(vec![old.clone(), new.clone()]);

    // 1. A POST whose body is still arriving when the reload happens.
    let body = minimal_user("inflight@x.y").to_string();
    let mut tls = h1_conn(&p).await;
    let req = head(
        "POST",
        "/SCIM/v2/Users",
        &format!(
            "Content-Type: application/scim+json\r\nContent-Length: {}\r\n",
            body.len()
        ),
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    tls.write_all(&body.as_bytes()[..10]).await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    write_private(p.dir(), "main.token", &format!("{new}\n"));
    p.running().reload().expect("reload");
    tls.write_all(&body.as_bytes()[10..]).await.unwrap();
    let a = read_one(&mut tls, STEP).await.unwrap();
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        authorization_of(&seen[0]),
        bearer(&old),
        "the request started on the old token"
    );
    // The same connection, next request: the new token.
    tls.write_all(head("GET", "/SCIM/v2/Users", "").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        read_one(&mut tls, STEP).await.unwrap().status,
        StatusCode::OK
    );
    assert_eq!(authorization_of(&up.requests()[1]), bearer(&new));

    // 2. A request waiting for a slow upstream answer across a reload back to the old token.
    up.push_override(Override {
        status: StatusCode::OK,
        headers: vec![("content-type".into(), "application/scim+json".into())],
        body: Bytes::from_static(b"{\"slow\":true}"),
        delay: Duration::from_millis(1500),
    });
    tls.write_all(head("GET", "/SCIM/v2/Users", "").as_bytes())
        .await
        .unwrap();
    let deadline = Instant::now() + STEP;
    while up.requests().len() < 3 {
        assert!(Instant::now() < deadline, "the slow request never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    write_private(p.dir(), "main.token", &format!("{old}\n"));
    p.running().reload().expect("reload");
    let a = read_one(&mut tls, STEP).await.unwrap();
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], b"{\"slow\":true}");
    tls.write_all(head("GET", "/SCIM/v2/Users", "Connection: close\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        read_one(&mut tls, STEP).await.unwrap().status,
        StatusCode::OK
    );
    let seen = up.requests();
    assert_eq!(authorization_of(&seen[2]), bearer(&new));
    assert_eq!(authorization_of(&seen[3]), bearer(&old));
    p.stop().await;
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
        assert_eq!(authorization_of(&upstream_saw(&up, &rid)), bearer(&next));
    }

    // Regenerated in Netskope: the old token dies at once, the file follows a moment later. The
    // first request after the file changed may meet a 401 and be resent with the new token (the
    // 401 re-read, tests/proxy/pacing.rs): either way the IdP gets no 401.
    let third = format!("v2-third-token-{}", uuid::Uuid::new_v4().simple());
    up.set_tokens(vec![third.clone()]);
    write_private(p.dir(), "main.token", &format!("{third}\n"));
    let statuses = until_upstream_last_sees(&p, &third, "hard").await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
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
        assert_eq!(authorization_of(&upstream_saw(&up, &rid)), bearer(&third));
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
            authorization_of(&upstream_saw(p.upstream(0), rid)),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_new_forward_proxy_credentials_and_a_change_of_egress() {
    let mut prepared = Builder::new().bind_ip("127.0.0.7").prepare().await;
    let up_port = prepared.upstreams[0].addr().port();
    let tp = Tinyproxy::start(up_port, Some((FWD_USER, FWD_PASS))).await;
    use_credentials(&mut prepared, &tp, FWD_WRONG_PASS);
    let mut p = prepared.start().await;

    let a = p.get("/SCIM/v2/Users", OKTA).await;
    p.assert_error(&a, 502, &["forward proxy"]);
    assert_eq!(p.upstream_total(), 0);

    // The right credentials, then a reload: the next request goes through.
    write_private(
        p.dir(),
        "fwd.credentials",
        &format!("{FWD_USER}:{FWD_PASS}\n"),
    );
    p.running().reload().expect("reload");
    let a = p.get("/SCIM/v2/Users", OKTA).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let last = p.upstream(0).requests().pop().expect("a request");
    assert_eq!(
        last.peer.ip(),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "through tinyproxy"
    );

    // No forward proxy any more: the pooled tunnel must not be reused; direct from bind_ip.
    let connects = tp.connect_targets().len();
    let lines = format!("{}via_proxy_auth_file = \"fwd.credentials\"\n", via(&tp));
    p.prepared.edit_config(&lines, "");
    p.running().reload().expect("reload");
    for _ in 0..2 {
        let a = p.get("/SCIM/v2/Users", ENTRA).await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        let last = p.upstream(0).requests().pop().expect("a request");
        assert_eq!(last.peer.ip(), IpAddr::V4(EGRESS_IP), "direct from bind_ip");
    }
    assert_eq!(tp.connect_targets().len(), connects, "{}", tp.log());

    // And back through the forward proxy.
    p.prepared
        .edit_config("\n[egress]\n", &format!("\n[egress]\n{lines}"));
    p.running().reload().expect("reload");
    let a = p.get("/SCIM/v2/Users", OKTA).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let last = p.upstream(0).requests().pop().expect("a request");
    assert_eq!(
        last.peer.ip(),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "through tinyproxy"
    );
    assert_eq!(tp.connect_targets().len(), connects + 1, "{}", tp.log());
    assert!(
        tp.clients().iter().all(|ip| *ip == IpAddr::V4(EGRESS_IP)),
        "{}",
        tp.log()
    );
    p.stop().await;
}
