//! A fleet of replicas sharing one registry through a real etcd (issue 26): hot-adds, policies
//! and forced trips reach every replica; concurrent writes resolve one way; etcd's death,
//! a partition and a compaction cost writes, never routing, and nothing acknowledged is lost;
//! an operator's label set on one replica is shown by all;
//! a dead replica leaves the fleet within its lease. The time from one replica's
//! acknowledgement to another replica applying it is printed (`fleet apply`), not asserted.

mod harness;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;
use harness::{data_dir, free_port, replica, replica_flags, Etcd, Relay, ETCD_PASSWORD, ETCD_USER};

/// Starts an in-process replica of the fleet in `etcd_url` in front of `orchestrators`.
async fn replica_gw(etcd_url: &str, id: &str, orchestrators: &[(&byoc_sim::SimHandle, &[&str])]) -> TestGateway {
    let url = etcd_url.to_string();
    let id = id.to_string();
    gateway_with(orchestrators, move |c| replica(c, &url, &id)).await
}

/// Waits until `gw` lists the orchestrator at `url`; returns it.
async fn sees(gw: &TestGateway, url: &str) -> Value {
    eventually(&format!("{} lists {url}", gw.admin), 500, || async {
        let list = gw.admin_get("/admin/orchestrators").await.json();
        list.as_array()?.iter().find(|o| o["url"] == url).cloned()
    })
    .await
}

fn ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list
        .as_array()
        .map(|a| a.iter().filter_map(|o| o["id"].as_str().map(String::from)).collect())
        .unwrap_or_default();
    ids.sort();
    ids
}

#[actix_web::test]
async fn three_replicas_share_hot_adds_policies_trips_and_removals() {
    let test = "fleet: three replicas share the registry";
    let Some(etcd) = Etcd::start(test).await else { return };
    let a = sim("a", &[("depth", healthy())]);
    let b = sim("b", &[("depth", healthy())]);
    let r1 = replica_gw(&etcd.url, "r1", &[]).await;
    let r2 = replica_gw(&etcd.url, "r2", &[]).await;
    let r3 = replica_gw(&etcd.url, "r3", &[]).await;

    // The fleet: three replicas, each with its addresses.
    let fleet = eventually("three replicas in the fleet", 500, || async {
        let f = r2.admin_get("/admin/fleet").await.json();
        (f["replicas"].as_array()?.len() == 3).then_some(f)
    })
    .await;
    assert_eq!(fleet["lease_ttl_seconds"], 3);
    let listed: Vec<&str> =
        fleet["replicas"].as_array().expect("list").iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(listed, ["r1", "r2", "r3"]);
    let r1_entry = &fleet["replicas"][0];
    assert_eq!(r1_entry["http_addr"].as_str(), r1.http.strip_prefix("http://"));
    assert_eq!(r1_entry["admin_addr"].as_str(), r1.admin.strip_prefix("http://"));
    for field in ["version", "uptime_seconds", "jobs_in_flight"] {
        assert!(!r1_entry[field].is_null(), "{field}: {r1_entry}");
    }

    // Hot-add on r1; route on r2 and r3.
    let sent = Instant::now();
    let added = r1.admin_post("/admin/orchestrators", json!({"url": a.url, "capabilities": ["depth"]})).await;
    assert_eq!(added.status, 201, "{:?}", added.body);
    let acked = sent.elapsed();
    let id = added.json()["id"].as_str().expect("id").to_string();
    for gw in [&r2, &r3] {
        let seen = sees(gw, &a.url).await;
        println!(
            "fleet apply: add acknowledged by r1 after {acked:?}, listed by {} after {:?}",
            gw.admin,
            sent.elapsed()
        );
        assert_eq!(seen["id"], id.as_str(), "the same id on every replica");
    }
    for (gw, n) in [(&r2, 0), (&r3, 1)] {
        let job = eventually("a job routed through the hot-added orchestrator", 250, || async {
            let j = gw.job("depth", &format!("j{n}")).await;
            (j.status == 200).then_some(j)
        })
        .await;
        assert_eq!(job.header("x-orchestrator-url").as_deref(), Some(a.url.as_str()));
    }
    // Every replica shows the same registry at the same revision.
    let revs = eventually("the same revision on every replica", 500, || async {
        let mut revs = Vec::new();
        for gw in [&r1, &r2, &r3] {
            let ans = gw.admin_get("/admin/orchestrators").await;
            revs.push((ans.header("x-registry-revision")?, ids(&ans.json())));
        }
        (revs.iter().all(|r| *r == revs[0])).then_some(revs)
    })
    .await;
    assert!(revs[0].0.parse::<i64>().is_ok_and(|r| r > 0), "{revs:?}");

    // A second orchestrator added on r2 gets the next id, the same everywhere.
    let added = r2.admin_post("/admin/orchestrators", json!({"url": b.url, "capabilities": ["depth"]})).await;
    assert_eq!(added.status, 201);
    let id_b = added.json()["id"].as_str().expect("id").to_string();
    assert_ne!(id_b, id);
    assert_eq!(sees(&r3, &b.url).await["id"], id_b.as_str());

    // A policy set on r3 is in force on r1.
    let put = r3.admin_put("/admin/capabilities/depth", json!({"max_attempts": 1, "retry_timeout": "3s"})).await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    eventually("r1 applies the policy", 500, || async {
        let c = r1.admin_get("/admin/capabilities/depth").await.json();
        (c["effective"]["max_attempts"] == 1).then_some(())
    })
    .await;

    // A forced trip on r2 (with its expiry) holds the pair open on r1 and r3 too.
    let trip = r2.admin_post(&format!("/admin/pairs/{id}/depth/trip?for=10m"), json!({})).await;
    assert_eq!(trip.status, 200, "{:?}", trip.body);
    for gw in [&r1, &r3] {
        let pair = eventually("the forced trip reaches the replica", 500, || async {
            let p = gw.admin_get(&format!("/admin/pairs/{id}/depth")).await.json();
            (p["breaker"]["forced"] == true).then_some(p)
        })
        .await;
        assert_eq!(pair["unroutable_reason"], "forced-open");
        assert!(pair["breaker"]["forced_until_unix_ms"].as_u64().is_some(), "{pair}");
    }
    // Jobs on r3 now go to b only.
    for n in 0..4 {
        let j = r3.job("depth", &format!("t{n}")).await;
        assert_eq!((j.status, j.header("x-orchestrator-url")), (200, Some(b.url.clone())), "job {n}");
    }
    // The reset on r1 frees it everywhere.
    assert_eq!(r1.admin_post(&format!("/admin/pairs/{id}/depth/reset"), json!({})).await.status, 200);
    eventually("the reset reaches r3", 500, || async {
        let p = r3.admin_get(&format!("/admin/pairs/{id}/depth")).await.json();
        (p["breaker"]["forced"] == false && p["breaker"]["state"] == "closed").then_some(())
    })
    .await;

    // Disabled on r1: draining on r2; removed on r3: gone from r1.
    assert_eq!(r1.admin_patch(&format!("/admin/orchestrators/{id_b}"), json!({"enabled": false})).await.status, 200);
    eventually("r2 drains b", 500, || async {
        let o = r2.admin_get(&format!("/admin/orchestrators/{id_b}")).await.json();
        (o["enabled"] == false).then_some(())
    })
    .await;
    assert_eq!(r3.admin_delete(&format!("/admin/orchestrators/{id_b}")).await.status, 204);
    eventually("r1 forgets b", 500, || async {
        (r1.admin_get(&format!("/admin/orchestrators/{id_b}")).await.status == 404).then_some(())
    })
    .await;
    // A write that names a removed orchestrator is a 404 on any replica, never a re-creation.
    assert_eq!(r2.admin_patch(&format!("/admin/orchestrators/{id_b}"), json!({"enabled": true})).await.status, 404);

    // The apply time is measured on every replica (a histogram in /metrics).
    let metrics = String::from_utf8_lossy(&r1.admin_get("/metrics").await.body).into_owned();
    assert!(metrics.contains("byoc_gateway_registry_apply_duration_seconds_count"), "{metrics}");
    for line in metrics.lines().filter(|l| l.starts_with("byoc_gateway_registry_apply_duration_seconds_")) {
        println!("fleet apply: {line}");
    }
}

/// The `byoc_gateway_orchestrator_info` line of `gw`'s `/metrics` for orchestrator `id`.
async fn info_line(gw: &TestGateway, id: &str) -> Option<String> {
    let text = String::from_utf8_lossy(&gw.admin_get("/metrics").await.body).into_owned();
    let prefix = format!("byoc_gateway_orchestrator_info{{orchestrator=\"{id}\"");
    text.lines().find(|l| l.starts_with(&prefix)).map(String::from)
}

/// Waits until `gw` shows orchestrator `id` with `label` (`None`: none) in its registry, its
/// pair's view and its `byoc_gateway_orchestrator_info` series.
async fn shows_label(gw: &TestGateway, id: &str, url: &str, label: Option<&str>) {
    let want = label.map_or(Value::Null, |l| json!(l));
    let info = match label {
        Some(l) => format!("byoc_gateway_orchestrator_info{{orchestrator=\"{id}\",orchestrator_label=\"{l}\"}} 1"),
        None => format!("byoc_gateway_orchestrator_info{{orchestrator=\"{id}\"}} 1"),
    };
    let seen = eventually(&format!("{} shows {id} labelled {label:?}", gw.admin), 500, || async {
        let o = gw.admin_get(&format!("/admin/orchestrators/{id}")).await.json();
        let p = gw.find_pair("depth", url).await?;
        let line = info_line(gw, id).await?;
        (o["label"] == want && p["orchestrator_label"] == want && line == info).then_some((o, line))
    })
    .await;
    assert_eq!(seen.0["url"], url);
}

#[actix_web::test]
async fn a_label_set_on_one_replica_is_shown_on_the_others() {
    let test = "fleet: labels";
    let Some(etcd) = Etcd::start(test).await else { return };
    let a = sim("a", &[("depth", healthy())]);
    let r1 = replica_gw(&etcd.url, "l1", &[]).await;
    let r2 = replica_gw(&etcd.url, "l2", &[]).await;
    let r3 = replica_gw(&etcd.url, "l3", &[]).await;

    // Added with a label on r1: labelled on r2 and r3 (registry, pair view, info series).
    let added =
        r1.admin_post("/admin/orchestrators", json!({"url": a.url, "capabilities": ["depth"], "label": "fast"})).await;
    assert_eq!(added.status, 201, "{:?}", added.body);
    let id = added.json()["id"].as_str().expect("id").to_string();
    for gw in [&r1, &r2, &r3] {
        shows_label(gw, &id, &a.url, Some("fast")).await;
    }
    // Relabelled on r2: the new label everywhere, the old one in no series.
    let patched = r2.admin_patch(&format!("/admin/orchestrators/{id}"), json!({"label": "l40s Frankfurt"})).await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    assert_eq!(patched.json()["label"], "l40s Frankfurt");
    for gw in [&r1, &r2, &r3] {
        shows_label(gw, &id, &a.url, Some("l40s Frankfurt")).await;
        let text = String::from_utf8_lossy(&gw.admin_get("/metrics").await.body).into_owned();
        assert!(!text.contains("orchestrator_label=\"fast\""), "{text}");
    }
    // A drain on r3 changes only `enabled`: the label stays on every replica.
    assert_eq!(r3.admin_patch(&format!("/admin/orchestrators/{id}"), json!({"enabled": false})).await.status, 200);
    for gw in [&r1, &r2] {
        eventually("the drain reaches the replica", 500, || async {
            let o = gw.admin_get(&format!("/admin/orchestrators/{id}")).await.json();
            (o["enabled"] == false).then_some(())
        })
        .await;
        shows_label(gw, &id, &a.url, Some("l40s Frankfurt")).await;
    }
    // Removed on r3 (null): no label anywhere.
    let cleared = r3.admin_patch(&format!("/admin/orchestrators/{id}"), json!({"label": null})).await;
    assert_eq!(cleared.status, 200, "{:?}", cleared.body);
    for gw in [&r1, &r2, &r3] {
        shows_label(gw, &id, &a.url, None).await;
    }
    // A bad label is refused on any replica and changes nothing anywhere.
    let bad = r1.admin_patch(&format!("/admin/orchestrators/{id}"), json!({"label": "x".repeat(200)})).await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);
    for gw in [&r2, &r3] {
        assert!(gw.admin_get(&format!("/admin/orchestrators/{id}")).await.json()["label"].is_null());
    }
}

#[actix_web::test]
async fn a_config_files_label_reaches_the_fleet_and_a_file_naming_none_keeps_the_admins() {
    let test = "fleet: labels from a config file";
    let Some(etcd) = Etcd::start(test).await else { return };
    let a = sim("a", &[("depth", healthy())]);
    let root = tempfile::tempdir().expect("tempdir");
    let file = root.path().join("gateway.toml");
    let write = |label: Option<&str>| {
        let label = label.map_or(String::new(), |l| format!("label = \"{l}\"\n"));
        let text = format!("[[orchestrators]]\nurl = \"{}\"\ncapabilities = [\"depth\"]\n{label}", a.url);
        std::fs::write(&file, text).expect("write config");
    };
    write(Some("from the file"));
    let data = data_dir(root.path(), "f1");
    let (f, d) = (file.to_str().expect("utf-8"), data.to_str().expect("utf-8"));
    let mut args = gateway_args(d, &["--config", f]);
    args.extend(replica_flags(&etcd.url, "f1"));
    let f1 = Process::spawn(&args);
    let r2 = replica_gw(&etcd.url, "f2", &[]).await;
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let reload = || async {
        let ans =
            read(client.post(format!("{}/admin/reload", f1.admin)).bearer_auth(TOKEN).send_json(&json!({})).await)
                .await;
        assert_eq!(ans.status, 200, "{}", String::from_utf8_lossy(&ans.body));
    };

    // The file's label is in the shared record: r2 (no file) shows it.
    let id = sees(&r2, &a.url).await["id"].as_str().expect("id").to_string();
    shows_label(&r2, &id, &a.url, Some("from the file")).await;
    // The file renames it; f1's reload writes that to etcd: r2 follows.
    write(Some("renamed"));
    reload().await;
    shows_label(&r2, &id, &a.url, Some("renamed")).await;
    // An admin labels it on r2; a reload of a file naming no label keeps the admin's.
    let patched = r2.admin_patch(&format!("/admin/orchestrators/{id}"), json!({"label": "admin's"})).await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    write(None);
    reload().await;
    // A later write through f1, once r2 has it, orders everything the reload wrote before it.
    let marker = read(
        client
            .post(format!("{}/admin/orchestrators", f1.admin))
            .bearer_auth(TOKEN)
            .send_json(&json!({"url": "http://127.0.0.1:9"}))
            .await,
    )
    .await;
    assert_eq!(marker.status, 201, "{}", String::from_utf8_lossy(&marker.body));
    sees(&r2, "http://127.0.0.1:9").await;
    shows_label(&r2, &id, &a.url, Some("admin's")).await;
    assert_eq!(f1.signal_and_wait("TERM"), Some(0));
}

#[actix_web::test]
async fn a_webhooks_labels_reach_the_replicas_without_the_webhook() {
    use crate::discovery::{with_webhook, Reply, Webhook};
    let test = "fleet: labels from the webhook";
    let Some(etcd) = Etcd::start(test).await else { return };
    let a = sim("a", &[("depth", healthy())]);
    let hook = Webhook::start(Reply::List(vec![]));
    let r1 = gateway_with(&[], |c| {
        replica(c, &etcd.url, "w1");
        with_webhook(&hook)(c);
    })
    .await;
    let r2 = replica_gw(&etcd.url, "w2", &[]).await;
    let listing = |label: &str| Reply::Body(json!([{"address": a.url, "label": label}]).to_string());
    let labelled = |label: &'static str| {
        let (r2, url) = (&r2, a.url.clone());
        async move {
            eventually(&format!("r2 shows the webhook's label {label}"), 500, || async {
                let o = sees(r2, &url).await;
                (o["label"] == label).then_some(o)
            })
            .await
        }
    };
    hook.set(listing("gpu-a"));
    let o = labelled("gpu-a").await;
    assert_eq!(o["source"], "webhook");
    // Renamed by the webhook: the webhook's own entry is relabelled in etcd, for every replica.
    hook.set(listing("gpu-a-renamed"));
    labelled("gpu-a-renamed").await;
    assert_eq!(sees(&r1, &a.url).await["label"], "gpu-a-renamed");
    hook.server.stop(false).await;
    drop(r1);
}

#[actix_web::test]
async fn concurrent_writes_on_several_replicas_resolve_one_way() {
    let test = "fleet: concurrent writes";
    let Some(etcd) = Etcd::start(test).await else { return };
    let r1 = replica_gw(&etcd.url, "c1", &[]).await;
    let r2 = replica_gw(&etcd.url, "c2", &[]).await;
    let r3 = replica_gw(&etcd.url, "c3", &[]).await;

    // The same URL on three replicas at once: one 201, two 409 naming the winner's id.
    let body = json!({"url": "http://127.0.0.1:9"});
    let (x, y, z) = tokio::join!(
        r1.admin_post("/admin/orchestrators", body.clone()),
        r2.admin_post("/admin/orchestrators", body.clone()),
        r3.admin_post("/admin/orchestrators", body.clone())
    );
    let mut statuses = vec![x.status, y.status, z.status];
    statuses.sort();
    assert_eq!(statuses, [201, 409, 409], "{x:?} {y:?} {z:?}");
    let winner = [&x, &y, &z].into_iter().find(|a| a.status == 201).expect("one").json()["id"].clone();
    for a in [&x, &y, &z].into_iter().filter(|a| a.status == 409) {
        assert!(a.error(409, "duplicate-orchestrator")["error"]["message"]
            .as_str()
            .expect("msg")
            .contains(winner.as_str().expect("id")));
    }

    // Different URLs at once: every one registered, each under its own id.
    let mut futs = Vec::new();
    for (i, gw) in [&r1, &r2, &r3, &r1, &r2, &r3].into_iter().enumerate() {
        futs.push(gw.admin_post("/admin/orchestrators", json!({"url": format!("http://127.0.0.1:{}", 100 + i)})));
    }
    let answers = futures_util::future::join_all(futs).await;
    let mut new_ids: Vec<String> = answers
        .iter()
        .map(|a| {
            assert_eq!(a.status, 201, "{a:?}");
            a.json()["id"].as_str().expect("id").to_string()
        })
        .collect();
    new_ids.sort();
    new_ids.dedup();
    assert_eq!(new_ids.len(), 6, "distinct ids: {new_ids:?}");

    // A disable racing a delete of the same entry: whichever etcd commits first, the entry is
    // gone on every replica afterwards (a late disable cannot bring it back).
    let target = new_ids[0].clone();
    let path = format!("/admin/orchestrators/{target}");
    let (p, d) = tokio::join!(r1.admin_patch(&path, json!({"enabled": false})), r2.admin_delete(&path));
    assert_eq!(d.status, 204);
    assert!(p.status == 200 || p.status == 404, "{p:?}");
    let lists = eventually("every replica agrees", 500, || async {
        let mut lists = Vec::new();
        for gw in [&r1, &r2, &r3] {
            lists.push(ids(&gw.admin_get("/admin/orchestrators").await.json()));
        }
        lists.iter().all(|l| *l == lists[0]).then_some(lists)
    })
    .await;
    assert_eq!(lists[0].len(), 6, "{lists:?}");
    assert!(!lists[0].contains(&target));
}

#[actix_web::test]
async fn with_etcd_down_routing_goes_on_writes_are_refused_and_resume_with_nothing_lost() {
    let test = "fleet: etcd down";
    let Some(mut etcd) = Etcd::start(test).await else { return };
    let a = sim("a", &[("depth", healthy())]);
    let r1 = replica_gw(&etcd.url, "d1", &[]).await;
    let r2 = replica_gw(&etcd.url, "d2", &[]).await;
    let added = r1.admin_post("/admin/orchestrators", json!({"url": a.url, "capabilities": ["depth"]})).await;
    assert_eq!(added.status, 201);
    sees(&r2, &a.url).await;
    assert!(r2.admin_get("/admin/orchestrators").await.header("x-registry-stale").is_none());

    etcd.kill();
    // Writes: refused, never half-applied, saying whether they may still commit.
    let refused = eventually("a write refused as not applied", 500, || async {
        let a = r1.admin_post("/admin/orchestrators", json!({"url": "http://127.0.0.1:7"})).await;
        assert_eq!(a.status, 503, "{a:?}");
        (a.json()["error"]["outcome"] == "not-applied").then_some(a)
    })
    .await;
    refused.error(503, "registry-unavailable");
    assert!(refused.header("retry-after").is_some());
    let put = r2.admin_put("/admin/capabilities/depth", json!({"max_attempts": 2})).await;
    assert_eq!(put.error(503, "registry-unavailable")["error"]["outcome"], "not-applied");
    // Reads say they may be stale; so do /metrics and /admin/registry.
    let read = r2.admin_get("/admin/orchestrators").await;
    assert!(read.header("x-registry-stale").is_some(), "{:?}", read.headers);
    assert_eq!(ids(&read.json()).len(), 1, "the last applied registry");
    let status = r2.admin_get("/admin/registry").await.json();
    assert_eq!((status["backend"].as_str(), status["stale"].as_bool()), (Some("etcd"), Some(true)), "{status}");
    let metrics = String::from_utf8_lossy(&r2.admin_get("/metrics").await.body).into_owned();
    assert!(metrics.lines().any(|l| l == "byoc_gateway_registry_stale 1"), "{metrics}");
    // Routing goes on with the registry as last applied.
    for (n, gw) in [&r1, &r2].into_iter().enumerate() {
        let j = gw.job("depth", &format!("down{n}")).await;
        assert_eq!((j.status, j.header("x-orchestrator-url")), (200, Some(a.url.clone())));
    }

    etcd.restart().await;
    // Writes resume (no restart of the replicas); what was there is still there.
    let b = sim("b", &[("depth", healthy())]);
    let added = eventually("writes accepted again", 500, || async {
        let a = r2.admin_post("/admin/orchestrators", json!({"url": b.url, "capabilities": ["depth"]})).await;
        (a.status == 201).then_some(a)
    })
    .await;
    sees(&r1, &b.url).await;
    let list = ids(&r1.admin_get("/admin/orchestrators").await.json());
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(list.contains(&added.json()["id"].as_str().expect("id").to_string()));
    eventually("fresh again", 500, || async {
        (r1.admin_get("/admin/orchestrators").await.header("x-registry-stale").is_none()).then_some(())
    })
    .await;
}

#[actix_web::test]
async fn a_cut_off_replica_resyncs_after_a_compaction_and_a_partitioned_write_is_unknown() {
    let test = "fleet: partition and compaction";
    let Some(etcd) = Etcd::start(test).await else { return };
    let relay = Relay::start(&etcd.url);
    let r1 = replica_gw(&etcd.url, "p1", &[]).await;
    let r2 = replica_gw(&relay.url, "p2", &[]).await;
    let first = r1.admin_post("/admin/orchestrators", json!({"url": "http://127.0.0.1:11"})).await;
    assert_eq!(first.status, 201);
    sees(&r2, "http://127.0.0.1:11").await;
    // An orchestrator with a pair on r2, to be relabelled while r2 is cut off.
    let s = sim("s", &[("depth", healthy())]);
    let with_pair = r1.admin_post("/admin/orchestrators", json!({"url": s.url, "capabilities": ["depth"]})).await;
    assert_eq!(with_pair.status, 201);
    let s_id = with_pair.json()["id"].as_str().expect("id").to_string();
    shows_label(&r2, &s_id, &s.url, None).await;

    // Partitioned: a write sent into the silence may still commit: "unknown".
    relay.blackhole();
    let lost = r2.admin_post("/admin/orchestrators", json!({"url": "http://127.0.0.1:13"})).await;
    assert_eq!(lost.error(503, "registry-unavailable")["error"]["outcome"], "unknown", "{lost:?}");
    relay.cut();
    eventually("r2 notices", 500, || async {
        (r2.admin_get("/admin/registry").await.json()["stale"] == true).then_some(())
    })
    .await;
    // Changes r2 cannot see, then the history it would resume from compacted away.
    let gone = first.json()["id"].as_str().expect("id").to_string();
    assert_eq!(r1.admin_delete(&format!("/admin/orchestrators/{gone}")).await.status, 204);
    assert_eq!(r1.admin_post("/admin/orchestrators", json!({"url": "http://127.0.0.1:12"})).await.status, 201);
    assert_eq!(r1.admin_put("/admin/capabilities/depth", json!({"max_attempts": 3})).await.status, 200);
    let relabelled = r1.admin_patch(&format!("/admin/orchestrators/{s_id}"), json!({"label": "while cut off"})).await;
    assert_eq!(relabelled.status, 200);
    let listed_by_r1 = ids(&r1.admin_get("/admin/orchestrators").await.json());
    if !etcd.compact(test) {
        return;
    }
    relay.heal();
    // r2 resyncs without a restart: the removal, the add and the policy are all there.
    eventually("r2 resynced", 500, || async {
        let list = r2.admin_get("/admin/orchestrators").await;
        let urls: Vec<String> =
            list.json().as_array()?.iter().filter_map(|o| o["url"].as_str().map(String::from)).collect();
        (urls.contains(&"http://127.0.0.1:12".to_string()) && list.header("x-registry-stale").is_none()).then_some(urls)
    })
    .await;
    // Exactly what r1 lists (the unanswered write may or may not have committed: both agree).
    assert_eq!(ids(&r2.admin_get("/admin/orchestrators").await.json()), listed_by_r1);
    assert!(!listed_by_r1.contains(&gone));
    let c = r2.admin_get("/admin/capabilities/depth").await.json();
    assert_eq!(c["effective"]["max_attempts"], 3, "{c}");
    // The label set meanwhile came with the resync, down to the pair's view and its series.
    shows_label(&r2, &s_id, &s.url, Some("while cut off")).await;
    let metrics = String::from_utf8_lossy(&r2.admin_get("/metrics").await.body).into_owned();
    assert!(metrics.contains("byoc_gateway_registry_watch_restarts_total{how=\"resynced\"}"), "{metrics}");
}

#[actix_web::test]
async fn kill_9_during_admin_writes_loses_no_acknowledged_write_and_the_dead_replica_leaves() {
    let test = "fleet: kill -9 a replica during writes";
    let Some(etcd) = Etcd::start(test).await else { return };
    let root = tempfile::tempdir().expect("tempdir");
    let data = data_dir(root.path(), "k1");
    let data = data.to_str().expect("utf-8");
    let mut args = gateway_args(data, &[]);
    args.extend(replica_flags(&etcd.url, "k1"));
    let victim = Process::spawn(&args);
    let survivor = replica_gw(&etcd.url, "k2", &[]).await;
    eventually("both in the fleet", 500, || async {
        (survivor.admin_get("/admin/fleet").await.json()["replicas"].as_array()?.len() == 2).then_some(())
    })
    .await;

    // Writes through the victim, one after another, until it dies under them.
    let client = awc::Client::builder().timeout(Duration::from_secs(10)).finish();
    let admin = victim.admin.clone();
    let writer = actix_web::rt::spawn(async move {
        let mut acked = Vec::new();
        for i in 0..400u32 {
            let url = format!("http://127.0.0.1:{}", 20_000 + i);
            let res = client
                .post(format!("{admin}/admin/orchestrators"))
                .bearer_auth(TOKEN)
                .send_json(&json!({"url": url}))
                .await;
            match res {
                Ok(r) if r.status().as_u16() == 201 => acked.push(url),
                Ok(r) => panic!("write {i}: {}", r.status()),
                Err(_) => break, // the victim is gone
            }
        }
        acked
    });
    eventually("some writes acknowledged", 500, || async {
        (survivor.admin_get("/admin/orchestrators").await.json().as_array()?.len() >= 5).then_some(())
    })
    .await;
    let started_kill = Instant::now();
    assert_eq!(victim.signal_and_wait("KILL"), None);
    let acked = writer.await.expect("writer");
    assert!(!acked.is_empty());

    // Every acknowledged write is in the fleet's registry.
    let list = survivor.admin_get("/admin/orchestrators").await.json();
    let urls: Vec<&str> = list.as_array().expect("list").iter().filter_map(|o| o["url"].as_str()).collect();
    for url in &acked {
        assert!(urls.contains(&url.as_str()), "acknowledged {url} is missing ({} acknowledged)", acked.len());
    }
    // The dead replica leaves the fleet when its lease runs out.
    eventually("the dead replica leaves the fleet", 1000, || async {
        let f = survivor.admin_get("/admin/fleet").await.json();
        let ids: Vec<&str> = f["replicas"].as_array()?.iter().filter_map(|r| r["id"].as_str()).collect();
        (ids == ["k2"]).then_some(())
    })
    .await;
    println!(
        "fleet lease: the killed replica left the fleet {:?} after kill -9 (lease TTL 3s)",
        started_kill.elapsed()
    );
}

#[actix_web::test]
async fn a_replica_starting_while_etcd_is_unreachable_starts_from_its_copy_or_refuses() {
    let test = "fleet: start while etcd is unreachable";
    let Some(mut etcd) = Etcd::start(test).await else { return };
    let a = sim("a", &[("depth", healthy())]);
    let root = tempfile::tempdir().expect("tempdir");
    let (with_copy, fresh) = (data_dir(root.path(), "copy"), data_dir(root.path(), "fresh"));
    let (with_copy, fresh) = (with_copy.to_str().expect("utf-8"), fresh.to_str().expect("utf-8"));
    // A replica that has run once keeps a copy of the registry in its data dir.
    {
        let mut args = gateway_args(with_copy, &[]);
        args.extend(replica_flags(&etcd.url, "s1"));
        let p = Process::spawn(&args);
        let c = awc::Client::default();
        let r = c
            .post(format!("{}/admin/orchestrators", p.admin))
            .bearer_auth(TOKEN)
            .send_json(&json!({"url": a.url, "capabilities": ["depth"]}))
            .await
            .expect("add");
        assert_eq!(r.status().as_u16(), 201);
        assert_eq!(p.signal_and_wait("TERM"), Some(0));
    }
    etcd.kill();

    // No copy: it refuses to start, saying why.
    let mut args = gateway_args(fresh, &[]);
    args.extend(replica_flags(&etcd.url, "s2"));
    let out = std::process::Command::new(binary()).args(&args).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no copy of the fleet's registry") && err.contains(&etcd.url), "{err}");

    // A copy: it starts from it, stale and loud, routes, and refuses writes.
    let log = root.path().join("s1.log");
    let mut args = gateway_args(with_copy, &[]);
    args.extend(replica_flags(&etcd.url, "s1"));
    let p = Process::spawn_with(&args, &[("RUST_LOG", "warn")], Some(&log));
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(logged.contains("ETCD UNREACHABLE AT START"), "{logged}");
    let c = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let mut r = c.get(format!("{}/admin/orchestrators", p.admin)).bearer_auth(TOKEN).send().await.expect("read");
    assert!(r.headers().get("x-registry-stale").is_some());
    let list: Value = r.json().await.expect("json");
    assert_eq!(list[0]["url"], a.url.as_str());
    let job = read(
        c.post(format!("{}/process/request/depth", p.http))
            .insert_header(("Livepeer", job_header("depth", "cached")))
            .send_body("{}")
            .await,
    )
    .await;
    assert_eq!((job.status, job.header("x-orchestrator-url")), (200, Some(a.url.clone())), "{job:?}");

    // etcd back: the replica follows again without a restart.
    etcd.restart().await;
    eventually("fresh once etcd answers", 500, || async {
        let r = c.get(format!("{}/admin/orchestrators", p.admin)).bearer_auth(TOKEN).send().await.ok()?;
        r.headers().get("x-registry-stale").is_none().then_some(())
    })
    .await;
}

#[actix_web::test]
async fn a_single_gateways_store_export_imports_into_etcd_and_its_data_dir_joins_the_fleet() {
    let test = "fleet: migration from sled";
    let Some(etcd) = Etcd::start(test).await else { return };
    let a = sim("a", &[("depth", healthy())]);
    let root = tempfile::tempdir().expect("tempdir");
    let data = data_dir(root.path(), "single");
    let data = data.to_str().expect("utf-8");
    // A single gateway (sled) with an orchestrator and a policy.
    let single = Process::spawn(&gateway_args(data, &[]));
    let c = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let mut r = c
        .post(format!("{}/admin/orchestrators", single.admin))
        .bearer_auth(TOKEN)
        .send_json(&json!({"url": a.url, "capabilities": ["depth"]}))
        .await
        .expect("add");
    let orch: Value = r.json().await.expect("json");
    let r = c
        .put(format!("{}/admin/capabilities/depth", single.admin))
        .bearer_auth(TOKEN)
        .send_json(&json!({"max_attempts": 2}))
        .await
        .expect("policy");
    assert_eq!(r.status().as_u16(), 200);
    let file = root.path().join("export.json");
    let file = file.to_str().expect("utf-8");
    let out = std::process::Command::new(binary())
        .args(["store", "export", file, "--admin-url", &single.admin, "--admin-token", TOKEN])
        .output()
        .expect("export");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(single.signal_and_wait("TERM"), Some(0));

    // Starting it as a replica before the import is refused: its registry would be lost.
    let mut args = gateway_args(data, &[]);
    args.extend(replica_flags(&etcd.url, "m1"));
    let refused = std::process::Command::new(binary()).args(&args).output().expect("run");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("store import"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let import = |extra: &[&str]| {
        std::process::Command::new(binary())
            .args(["store", "import", file, "--registry-backend", "etcd", "--etcd-endpoints", &etcd.url])
            .args(["--registry-prefix", "/byoc-test/"])
            .args(extra)
            .output()
            .expect("import")
    };
    let out = import(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 1 orchestrators and 1 policies"));
    // A second import would clash: refused, nothing written.
    let again = import(&[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("conflict"), "{}", String::from_utf8_lossy(&again.stderr));

    // The old data dir joins the fleet with the same ids; another replica sees them too.
    let joined = Process::spawn(&args);
    joined.wait_probed().await;
    let other = replica_gw(&etcd.url, "m2", &[]).await;
    let seen = sees(&other, &a.url).await;
    assert_eq!(seen["id"], orch["id"]);
    let c2 = other.admin_get("/admin/capabilities/depth").await.json();
    assert_eq!(c2["effective"]["max_attempts"], 2);
    let job = other.job("depth", "migrated").await;
    assert_eq!((job.status, job.header("x-orchestrator-url")), (200, Some(a.url.clone())));
    // New ids continue past the imported ones.
    let b = other.admin_post("/admin/orchestrators", json!({"url": "http://127.0.0.1:5"})).await;
    assert_eq!(b.status, 201);
    assert_ne!(b.json()["id"], orch["id"]);
    drop(joined);
}

/// The flags of etcd's user with its password in `password_file`.
fn etcd_login(password_file: &str) -> [&str; 4] {
    ["--etcd-username", ETCD_USER, "--etcd-password-file", password_file]
}

#[actix_web::test]
async fn a_replica_reaches_etcd_over_tls_with_a_password_that_is_never_shown() {
    let test = "fleet: etcd over TLS with authentication";
    let Some(etcd) = Etcd::start_secure(test).await else { return };
    let a = sim("a", &[("depth", healthy())]);
    let root = tempfile::tempdir().expect("tempdir");
    let ca = etcd.ca_file();
    let ca = ca.to_str().expect("utf-8");
    let good = root.path().join("etcd-password");
    std::fs::write(&good, format!("{ETCD_PASSWORD}\n")).expect("password file");
    let wrong = root.path().join("wrong-password");
    let wrong_password = "not-the-etcd-pass";
    std::fs::write(&wrong, wrong_password).expect("password file");
    let (good, wrong) = (good.to_str().expect("utf-8"), wrong.to_str().expect("utf-8"));
    let leak = |text: &str| text.contains(ETCD_PASSWORD) || text.contains(wrong_password);

    // The right CA, user and password: the replica joins and its writes land in etcd.
    let dir = data_dir(root.path(), "s1");
    let log = root.path().join("s1.log");
    let mut args = gateway_args(dir.to_str().expect("utf-8"), &["--etcd-ca-file", ca]);
    args.extend(replica_flags(&etcd.url, "s1"));
    args.extend(etcd_login(good));
    let p = Process::spawn_with(&args, &[("RUST_LOG", "debug")], Some(&log));
    let c = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let r = c
        .post(format!("{}/admin/orchestrators", p.admin))
        .bearer_auth(TOKEN)
        .send_json(&json!({"url": a.url, "capabilities": ["depth"]}))
        .await
        .expect("add");
    assert_eq!(r.status().as_u16(), 201);
    let mut r = c.get(format!("{}/admin/fleet", p.admin)).bearer_auth(TOKEN).send().await.expect("fleet");
    let fleet: Value = r.json().await.expect("json");
    assert_eq!(fleet["replicas"][0]["id"], "s1", "{fleet}");
    // etcd itself holds the orchestrator (read with etcdctl as the same user).
    let out = std::process::Command::new("etcdctl")
        .args(["--endpoints", &etcd.url, "--cacert", ca, "--user"])
        .arg(format!("{ETCD_USER}:{ETCD_PASSWORD}"))
        .args(["get", "--prefix", "/byoc-test/registry/"])
        .output()
        .expect("etcdctl");
    assert!(String::from_utf8_lossy(&out.stdout).contains(a.url.as_str()), "{out:?}");
    // Without credentials etcd refuses to show the registry: authentication is really on.
    let anonymous = std::process::Command::new("etcdctl")
        .args(["--endpoints", &etcd.url, "--cacert", ca, "get", "--prefix", "/byoc-test/registry/"])
        .output()
        .expect("etcdctl");
    assert!(!String::from_utf8_lossy(&anonymous.stdout).contains(a.url.as_str()), "{anonymous:?}");

    // A wrong password (or no CA to trust etcd's certificate): a new replica refuses to start
    // and says why, without showing the password.
    for (name, extra) in [("s2", vec!["--etcd-ca-file", ca]), ("s3", vec![])] {
        let dir = data_dir(root.path(), name);
        let mut args = gateway_args(dir.to_str().expect("utf-8"), &extra);
        args.extend(replica_flags(&etcd.url, name));
        args.extend(etcd_login(if name == "s2" { wrong } else { good }));
        let out = std::process::Command::new(binary()).args(&args).env("RUST_LOG", "debug").output().expect("run");
        assert!(!out.status.success(), "{name} started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&etcd.url) && err.contains("no copy of the fleet's registry"), "{name}: {err}");
        if name == "s2" {
            assert!(err.to_lowercase().contains("authentication failed"), "{err}");
        }
        assert!(!leak(&err) && !leak(&String::from_utf8_lossy(&out.stdout)), "{name} showed a password: {err}");
    }

    assert_eq!(p.signal_and_wait("TERM"), Some(0));
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!logged.is_empty());
    assert!(!leak(&logged), "the password is in the log: {logged}");
}

#[actix_web::test]
async fn each_replica_hands_out_stream_urls_at_its_own_public_address() {
    let test = "fleet: stream URLs per replica";
    let Some(etcd) = Etcd::start(test).await else { return };
    let a = sim("a", &[(crate::streams::CAP, crate::streams::live())]);
    let mut replicas = Vec::new();
    for id in ["r1", "r2"] {
        // Each replica's own address as its public URL, as an operator sets it per replica.
        let addr = format!("127.0.0.1:{}", free_port());
        let url = etcd.url.clone();
        let public = format!("http://{addr}");
        let gw = gateway_with(&[], |c| {
            replica(c, &url, id);
            crate::streams::streams_config(c);
            c.http_addr = addr.clone();
            c.streams.public_url = public.clone();
        })
        .await;
        assert_eq!(gw.http, public);
        replicas.push(gw);
    }
    let (r1, r2) = (&replicas[0], &replicas[1]);
    let added =
        r1.admin_post("/admin/orchestrators", json!({"url": a.url, "capabilities": [crate::streams::CAP]})).await;
    assert_eq!(added.status, 201, "{:?}", added.body);
    sees(r2, &a.url).await;
    let fleet = r1.admin_get("/admin/fleet").await.json();
    for (i, gw) in [r1, r2].into_iter().enumerate() {
        assert_eq!(fleet["replicas"][i]["public_url"], gw.http.as_str(), "{fleet}");
    }

    // A start reaching a replica through a load balancer (its Host header is the balancer's):
    // the stream's URLs name the replica that holds the stream, not the balancer.
    for (gw, id) in [(r1, "s1"), (r2, "s2")] {
        let answer = read(
            gw.client
                .post(format!("{}/process/stream/start", gw.http))
                .insert_header(("Host", "balancer.example:9935"))
                .insert_header(("Livepeer", crate::streams::header(crate::streams::CAP, &crate::streams::all(), 10)))
                .insert_header(("Content-Type", "application/json"))
                .send_body(json!({"stream_id": id, "params": "{}"}).to_string())
                .await,
        )
        .await;
        assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
        let urls = answer.json();
        assert_eq!(urls["status_url"], format!("{}/process/stream/{id}/status", gw.http), "{urls}");
        for field in ["whip_url", "whep_url", "update_url", "data_url", "stop_url"] {
            let u = urls[field].as_str().unwrap_or_default();
            assert!(!u.contains("balancer.example"), "{field}: {urls}");
        }
        // The URL works; the other replica does not hold the stream (why stickiness would
        // otherwise be needed).
        assert_eq!(gw.stream_status(id).await.status, 200);
        let other = if id == "s1" { r2 } else { r1 };
        assert_eq!(other.stream_status(id).await.status, 404);
    }
    // Each replica counts the streams it holds in its fleet record (renewed every third of
    // the lease).
    eventually("each replica's record counts its stream", 500, || async {
        let fleet = r2.admin_get("/admin/fleet").await.json();
        let counts: Vec<u64> =
            fleet["replicas"].as_array()?.iter().filter_map(|r| r["streams_in_flight"].as_u64()).collect();
        (counts == [1, 1]).then_some(())
    })
    .await;
}
