//! The invalidation bus between instances on one real server: delivery, no echo, replay
//! after a disconnect, `Resync` after a trim or a server restart.

mod common;

use std::time::Duration;

use cache_core::{BusMessage, BusSubscription, InstanceId, InvalidationBus, InvalidationEvent};
use cache_redis::testing::{TcpProxy, redis_tests_skipped};
use cache_redis::{RedisBus, RedisCache, RedisConfig};

/// Waits for the next message, failing the test instead of hanging.
async fn next(subscription: &mut BusSubscription) -> BusMessage {
    tokio::time::timeout(Duration::from_secs(10), subscription.recv())
        .await
        .expect("a bus message within 10 s")
        .expect("the subscription is open")
}

fn delete(key: &str) -> InvalidationEvent {
    InvalidationEvent::Delete {
        key: key.to_owned(),
    }
}

fn event_from(origin: InstanceId, event: InvalidationEvent) -> BusMessage {
    BusMessage::Event { origin, event }
}

async fn bus(url: &str, namespace: &str, max_len: u64) -> RedisBus {
    RedisCache::connect(
        RedisConfig::new(url)
            .with_namespace(namespace)
            .with_command_timeout(Duration::from_secs(2))
            .with_reconnect_max_delay(Duration::from_millis(100))
            .with_bus_stream_max_len(max_len),
    )
    .await
    .unwrap()
    .bus()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_the_other_instance_and_not_their_origin() {
    if redis_tests_skipped() {
        return;
    }
    let server = common::own_server();
    let namespace = common::unique_namespace("bus");
    let (a, b) = (
        bus(&server.url(), &namespace, 1_000).await,
        bus(&server.url(), &namespace, 1_000).await,
    );
    assert_ne!(a.instance_id(), b.instance_id());
    let mut a_messages = a.subscribe().await.unwrap();
    let mut b_messages = b.subscribe().await.unwrap();

    a.publish(delete("GET:/users/1")).await.unwrap();
    a.publish(InvalidationEvent::DeleteTag {
        tag: "users".into(),
    })
    .await
    .unwrap();
    assert_eq!(
        next(&mut b_messages).await,
        event_from(a.instance_id(), delete("GET:/users/1"))
    );
    assert_eq!(
        next(&mut b_messages).await,
        event_from(
            a.instance_id(),
            InvalidationEvent::DeleteTag {
                tag: "users".into()
            }
        )
    );

    // A's first message is B's event: its own two were never delivered to it.
    b.publish(InvalidationEvent::Clear).await.unwrap();
    assert_eq!(
        next(&mut a_messages).await,
        event_from(b.instance_id(), InvalidationEvent::Clear)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_while_a_subscriber_was_cut_off_arrive_after_it_reconnects() {
    if redis_tests_skipped() {
        return;
    }
    let server = common::own_server();
    let proxy = TcpProxy::start(server.port()).await.unwrap();
    let namespace = common::unique_namespace("replay");
    let a = bus(&server.url(), &namespace, 1_000).await;
    let b = bus(&proxy.url(), &namespace, 1_000).await;
    let mut b_messages = b.subscribe().await.unwrap();
    a.publish(delete("before")).await.unwrap();
    assert_eq!(
        next(&mut b_messages).await,
        event_from(a.instance_id(), delete("before"))
    );

    // B's connections drop and stay down while A publishes.
    proxy.cut().await;
    for key in ["missed-1", "missed-2", "missed-3"] {
        a.publish(delete(key)).await.unwrap();
    }
    proxy.restore();
    a.publish(delete("after")).await.unwrap();

    // Each exactly once, in order: replayed from the stream, then live.
    for key in ["missed-1", "missed-2", "missed-3", "after"] {
        assert_eq!(
            next(&mut b_messages).await,
            event_from(a.instance_id(), delete(key))
        );
    }
    a.publish(delete("last")).await.unwrap();
    assert_eq!(
        next(&mut b_messages).await,
        event_from(a.instance_id(), delete("last"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_whose_position_was_trimmed_away_receives_resync() {
    if redis_tests_skipped() {
        return;
    }
    let server = common::own_server();
    let proxy = TcpProxy::start(server.port()).await.unwrap();
    let namespace = common::unique_namespace("trim");
    let a = bus(&server.url(), &namespace, 10).await;
    let b = bus(&proxy.url(), &namespace, 10).await;
    let mut b_messages = b.subscribe().await.unwrap();
    a.publish(delete("seen")).await.unwrap();
    assert_eq!(
        next(&mut b_messages).await,
        event_from(a.instance_id(), delete("seen"))
    );

    proxy.cut().await;
    // `MAXLEN ~ 10` trims whole stream nodes (100 entries each by default): 1,000 events
    // push everything B has not seen out of the stream.
    for index in 0..1_000 {
        a.publish(delete(&format!("lost-{index}"))).await.unwrap();
    }
    proxy.restore();
    assert!(matches!(
        next(&mut b_messages).await,
        BusMessage::Resync { .. }
    ));

    // After the resync B is live again from the stream's end.
    a.publish(delete("fresh")).await.unwrap();
    assert_eq!(
        next(&mut b_messages).await,
        event_from(a.instance_id(), delete("fresh"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_makes_subscribers_resync() {
    if redis_tests_skipped() {
        return;
    }
    let mut server = common::own_server();
    let namespace = common::unique_namespace("restart");
    let a = bus(&server.url(), &namespace, 1_000).await;
    let b = bus(&server.url(), &namespace, 1_000).await;
    let mut b_messages = b.subscribe().await.unwrap();
    a.publish(delete("seen")).await.unwrap();
    assert_eq!(
        next(&mut b_messages).await,
        event_from(a.instance_id(), delete("seen"))
    );

    // The restarted server kept nothing: whatever was published just before is lost.
    server.restart().unwrap();
    match next(&mut b_messages).await {
        BusMessage::Resync { reason } => assert!(reason.contains("restarted"), "{reason}"),
        other => panic!("expected a resync, got {other:?}"),
    }
    // Publishing works on the same manager after the restart, and reaches B.
    // The first publish on the same manager succeeds: a broken connection is retried once.
    a.publish(delete("after-restart")).await.unwrap();
    assert_eq!(
        next(&mut b_messages).await,
        event_from(a.instance_id(), delete("after-restart"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_subscription_stops_its_subscriber() {
    if redis_tests_skipped() {
        return;
    }
    let server = common::own_server();
    let namespace = common::unique_namespace("drop");
    let a = bus(&server.url(), &namespace, 1_000).await;
    let mut plain = common::plain_connection(&server.url()).await;
    let subscribers = |connection: &mut redis::aio::MultiplexedConnection| {
        let mut connection = connection.clone();
        let channel = a.channel().to_owned();
        async move {
            let counts: Vec<(String, u64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&channel)
                .query_async(&mut connection)
                .await
                .unwrap();
            counts[0].1
        }
    };
    let subscription = a.subscribe().await.unwrap();
    // The subscriber connects in the background; wait for the server to list it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while subscribers(&mut plain).await != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the subscriber never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(subscription);
    while subscribers(&mut plain).await != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the subscriber kept its connection"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_falls_behind_gets_resync_even_when_the_bus_goes_quiet() {
    if redis_tests_skipped() {
        return;
    }
    let server = common::own_server();
    let namespace = common::unique_namespace("behind");
    let a = bus(&server.url(), &namespace, 10_000).await;
    let b = bus(&server.url(), &namespace, 10_000).await;
    let mut b_messages = b.subscribe().await.unwrap();
    // More events than B's queue holds (1,024), none read yet; then silence.
    for index in 0..1_100 {
        a.publish(delete(&format!("k{index}"))).await.unwrap();
    }
    let mut events_before_resync = Vec::new();
    loop {
        match next(&mut b_messages).await {
            BusMessage::Event {
                event: InvalidationEvent::Delete { key },
                ..
            } => events_before_resync.push(key),
            BusMessage::Resync { .. } => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    // What arrived before the resync is an unbroken prefix of what was published.
    let expected: Vec<String> = (0..events_before_resync.len())
        .map(|index| format!("k{index}"))
        .collect();
    assert_eq!(events_before_resync, expected);
    assert!(events_before_resync.len() < 1_100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_cannot_catch_up_sends_resync_at_every_attempt_until_it_can() {
    if redis_tests_skipped() {
        return;
    }
    let server = common::own_server();
    let admin = common::plain_connection(&server.url()).await;
    let acl = |rules: &'static [&'static str]| {
        let mut admin = admin.clone();
        async move {
            let () = redis::cmd("ACL")
                .arg("SETUSER")
                .arg("bus-reader")
                .arg(rules)
                .query_async(&mut admin)
                .await
                .unwrap();
        }
    };
    acl(&["on", ">reader-pw", "~*", "&*", "+@all"]).await;
    let namespace = common::unique_namespace("noperm");
    let a = bus(&server.url(), &namespace, 1_000).await;
    let reader_url = format!("redis://bus-reader:reader-pw@127.0.0.1:{}", server.port());
    let b = bus(&reader_url, &namespace, 1_000).await;
    let mut b_messages = b.subscribe().await.unwrap();
    a.publish(delete("seen")).await.unwrap();
    assert_eq!(
        next(&mut b_messages).await,
        event_from(a.instance_id(), delete("seen"))
    );

    // B may no longer read the stream's state, and loses its subscription: every attempt
    // to catch up is refused (NOPERM on XINFO inside the catch-up script).
    acl(&["-xinfo"]).await;
    let killed: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut admin.clone())
        .await
        .unwrap();
    assert_eq!(killed, 1);
    a.publish(delete("missed")).await.unwrap();
    for _ in 0..3 {
        match next(&mut b_messages).await {
            BusMessage::Resync { reason } => {
                assert!(reason.contains("cannot catch up"), "{reason}");
            }
            other => panic!("expected a resync, got {other:?}"),
        }
    }

    // Once it may again, it replays what it missed from where it stood, then goes live.
    acl(&["+xinfo"]).await;
    a.publish(delete("after")).await.unwrap();
    let first_event = loop {
        match next(&mut b_messages).await {
            BusMessage::Resync { .. } => {}
            event => break event,
        }
    };
    assert_eq!(first_event, event_from(a.instance_id(), delete("missed")));
    assert_eq!(
        next(&mut b_messages).await,
        event_from(a.instance_id(), delete("after"))
    );
    a.publish(delete("live")).await.unwrap();
    assert_eq!(
        next(&mut b_messages).await,
        event_from(a.instance_id(), delete("live"))
    );
}
