use crate::*;
use warden_policy::sync::{ADS_SERVICE, DELTA_METHOD};

const A: &str = "sk-bf-aaaaaaaa-0000-4000-8000-000000000001";
const B: &str = "sk-bf-bbbbbbbb-0000-4000-8000-000000000002";

#[test]
fn settings_are_checked_and_a_bad_one_is_refused() {
    let proxy = Proxy::load(&warden_tests::filter_wasm());
    let (mut vm, ok) = proxy.vm(SETTINGS).unwrap();
    assert!(ok);
    assert_eq!(vm.tick_period_ms(), 500);
    for bad in [
        "",
        "{",
        r#"{"control_plane_cluster":"x","staleness_bound_ms":0}"#,
        r#"{"control_plane_cluster":"x","extra":1}"#,
    ] {
        assert!(!vm.configure(bad).unwrap(), "{bad} was accepted");
    }
    assert!(vm.logs().iter().any(|l| l.contains("unknown field `extra`")), "{:?}", vm.logs());
}

#[test]
fn the_stream_subscribes_acks_and_nacks_by_xds_rules() {
    let (_proxy, mut vm, token) = leader();
    let stream = &vm.streams()[&token];
    assert_eq!(
        (stream.cluster.as_str(), stream.service.as_str(), stream.method.as_str()),
        ("warden_xds", ADS_SERVICE, DELTA_METHOD)
    );
    let subscribe = last_sent(&vm, token);
    assert_eq!(subscribe.type_url, POLICY_TYPE_URL);
    assert_eq!(subscribe.node.unwrap().id, "harness-node");
    assert!(subscribe.initial_resource_versions.is_empty());

    let first = vec![resource(A, &record("id-a", true, None)), named("provider:mock", &provider("mock"))];
    vm.deliver(token, &response("7", first, vec![])).unwrap();
    let ack = last_sent(&vm, token);
    assert_eq!((ack.response_nonce.as_str(), ack.error_detail.is_none()), ("7", true));

    // One unreadable record: NACKed by name, denied alone; the rest of the response applies.
    let mut bad = resource(B, &record("id-b", true, None));
    bad.resource.as_mut().unwrap().value = b"{not json".to_vec();
    let good = resource("sk-bf-cccccccc-0000-4000-8000-000000000003", &record("id-c", true, None));
    vm.deliver(token, &response("8", vec![bad.clone(), good], vec![])).unwrap();
    vm.deliver(token, &heartbeat("8")).unwrap();
    let nack = last_sent(&vm, token);
    assert_eq!(nack.response_nonce, "8");
    let detail = nack.error_detail.expect("a NACK");
    assert!(detail.message.contains(&bad.name), "{}", detail.message);
    assert_eq!(chat(&mut vm, &[("x-bf-vk", B)]).unwrap().reply.unwrap().status, 401);
    assert!(chat(&mut vm, &[("x-bf-vk", "sk-bf-cccccccc-0000-4000-8000-000000000003")]).unwrap().forwarded);
    assert!(chat(&mut vm, &[("x-bf-vk", A)]).unwrap().forwarded);

    // Heartbeats are not acknowledged.
    let sent = vm.streams()[&token].sent.len();
    vm.deliver(token, &heartbeat("8")).unwrap();
    assert_eq!(vm.streams()[&token].sent.len(), sent);
}

#[test]
fn changes_and_removals_apply_at_once() {
    let (_proxy, mut vm, token) = with_keys(&[(A, record("id-a", true, None)), (B, record("id-b", true, None))]);
    assert!(chat(&mut vm, &[("x-bf-vk", A)]).unwrap().forwarded);
    vm.deliver(token, &response("2", vec![resource(A, &record("id-a", false, None))], vec![])).unwrap();
    assert_eq!(chat(&mut vm, &[("x-bf-vk", A)]).unwrap().reply.unwrap().status, 403);
    vm.deliver(token, &response("3", vec![], vec![key_name(B)])).unwrap();
    assert_eq!(chat(&mut vm, &[("x-bf-vk", B)]).unwrap().reply.unwrap().status, 401);
}

#[test]
fn a_new_stream_lists_what_this_envoy_holds() {
    let (proxy, mut vm, token) = with_keys(&[(A, record("id-a", true, None)), (B, record("id-b", true, None))]);
    vm.deliver(token, &response("2", vec![], vec![key_name(B)])).unwrap();
    vm.close_stream(token, 14).unwrap();
    vm.tick().unwrap();
    assert_eq!(vm.open_stream(), None, "reconnects only after a back-off");
    proxy.advance_ms(300);
    vm.tick().unwrap();
    let again = vm.open_stream().expect("reconnected");
    assert_ne!(again, token);
    let subscribe = last_sent(&vm, again);
    let mut held: Vec<&String> = subscribe.initial_resource_versions.keys().collect();
    held.sort();
    assert_eq!(held, [&"provider:mock".to_string(), &key_name(A)]);
    assert_eq!(subscribe.initial_resource_versions[&key_name(A)], resource(A, &record("id-a", true, None)).version);
    // Meanwhile the last policy keeps being enforced.
    assert!(chat(&mut vm, &[("x-bf-vk", A)]).unwrap().forwarded);
}

#[test]
fn one_vm_leads_and_another_takes_over_when_it_stops() {
    let proxy = Proxy::load(&warden_tests::filter_wasm());
    proxy.set_now_ms(T0);
    let (mut main, _) = proxy.vm(SETTINGS).unwrap();
    let (mut worker, _) = proxy.vm(SETTINGS).unwrap();
    main.tick().unwrap();
    worker.tick().unwrap();
    assert!(main.open_stream().is_some());
    assert!(worker.open_stream().is_none(), "two leaders");

    // A VM that serves requests takes the lease from one that does not.
    worker.request_str(&[]).unwrap();
    proxy.advance_ms(500);
    worker.tick().unwrap();
    main.tick().unwrap();
    assert!(worker.open_stream().is_some());
    assert!(main.open_stream().is_none(), "the displaced leader closes its stream");

    // The leader dies (stops ticking): after its lease runs out, the other VM takes over.
    proxy.advance_ms(1_500);
    main.tick().unwrap();
    assert!(main.open_stream().is_none(), "took over before the lease ran out");
    proxy.advance_ms(500);
    main.tick().unwrap();
    assert!(main.open_stream().is_some());
}

#[test]
fn a_leaving_root_context_hands_the_lease_over_at_once() {
    let proxy = Proxy::load(&warden_tests::filter_wasm());
    proxy.set_now_ms(T0);
    let (mut a, _) = proxy.vm(SETTINGS).unwrap();
    let (mut b, _) = proxy.vm(SETTINGS).unwrap();
    a.tick().unwrap();
    assert!(a.open_stream().is_some());
    a.shutdown().unwrap();
    assert!(a.open_stream().is_none());
    b.tick().unwrap();
    assert!(b.open_stream().is_some());
}
