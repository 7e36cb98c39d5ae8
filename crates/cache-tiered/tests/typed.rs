//! Typed values through the stack.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cache_core::CacheManager;
use cache_memory::{MemoryCache, MemoryConfig};
use cache_tiered::{Tier, TieredCache, TtlPreset};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
    tags: Vec<String>,
}

async fn stack() -> (TieredCache, Arc<MemoryCache>) {
    let l1 = Arc::new(MemoryCache::open(MemoryConfig::default()).unwrap());
    let stack = TieredCache::builder()
        .tier(Tier::new(l1.clone()))
        .tier(Tier::new(Arc::new(
            MemoryCache::open(MemoryConfig::default()).unwrap(),
        )))
        .build()
        .await
        .unwrap();
    (stack, l1)
}

#[test]
fn presets_have_their_documented_durations() {
    assert_eq!(TtlPreset::RealTime.duration(), Duration::from_secs(10));
    assert_eq!(TtlPreset::Short.duration(), Duration::from_secs(300));
    assert_eq!(TtlPreset::Medium.duration(), Duration::from_secs(3_600));
    assert_eq!(TtlPreset::Long.duration(), Duration::from_secs(10_800));
    assert_eq!(
        TtlPreset::Custom(Duration::from_millis(1_500)).duration(),
        Duration::from_millis(1_500)
    );
}

#[tokio::test]
async fn a_typed_value_is_computed_once_and_kept_for_its_preset() {
    let (stack, l1) = stack().await;
    let computed = Arc::new(AtomicUsize::new(0));
    let expected = Profile {
        id: 42,
        name: "Ada".into(),
        tags: vec!["admin".into()],
    };
    for _ in 0..3 {
        let (computed, value) = (computed.clone(), expected.clone());
        let profile: Profile = stack
            .get_or_compute_typed("profile:42", TtlPreset::Medium, move || async move {
                computed.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(value)
            })
            .await
            .unwrap();
        assert_eq!(profile, expected);
    }
    assert_eq!(computed.load(Ordering::SeqCst), 1);
    let stored = l1.get_entry("profile:42").unwrap().unwrap();
    assert_eq!(stored.metadata.storage_ttl(), Duration::from_secs(3_600));
    assert_eq!(stored.response.headers["content-type"], "application/json");
}

#[tokio::test]
async fn a_value_of_another_type_under_the_key_is_replaced() {
    let (stack, _) = stack().await;
    let number: u32 = stack
        .get_or_compute_typed("k", TtlPreset::Short, || async {
            Ok::<_, std::io::Error>(7u32)
        })
        .await
        .unwrap();
    assert_eq!(number, 7);
    let text: String = stack
        .get_or_compute_typed("k", TtlPreset::Short, || async {
            Ok::<_, std::io::Error>("seven".to_owned())
        })
        .await
        .unwrap();
    assert_eq!(text, "seven");
    // And now the string is what is stored.
    let entry = stack.get("k").await.unwrap().unwrap();
    assert_eq!(&entry.response.body[..], b"\"seven\"");
}

#[tokio::test]
async fn a_compute_error_is_returned_and_nothing_is_stored() {
    let (stack, _) = stack().await;
    let error = stack
        .get_or_compute_typed::<u32, _, _, _>("k", TtlPreset::RealTime, || async {
            Err(std::io::Error::other("no database"))
        })
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "the fetch failed: no database");
    assert!(stack.get("k").await.unwrap().is_none());
}
