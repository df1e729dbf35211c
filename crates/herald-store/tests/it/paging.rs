//! Property: walking a list page by page, forward with `iterator` or back
//! with `prevIterator`, visits every item exactly once and in order.

use herald_store::{Order, PageRequest};
use proptest::prelude::*;

use crate::{app, each_backend};

fn walk(n: usize, limit: usize, descending: bool) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(each_backend(move |b| async move {
        let s = &b.store;
        let mut created = Vec::new();
        for i in 0..n {
            created.push(app(s, &format!("app {i}")).await.to_string());
        }
        let order = if descending {
            Order::Descending
        } else {
            Order::Ascending
        };
        let mut expected = created.clone();
        if descending {
            expected.reverse();
        }

        let fetch = |iterator: Option<String>| async move {
            s.list_apps(PageRequest { limit, iterator, order }).await.unwrap()
        };

        // Forward to the end.
        let mut seen = Vec::new();
        let mut pages = 0;
        let mut last_prev: Option<String>;
        let mut iterator = None;
        loop {
            let page = fetch(iterator.clone()).await;
            assert!(page.data.len() <= limit);
            seen.extend(page.data.iter().map(|a| a.id.to_string()));
            pages += 1;
            last_prev = page.prev_iterator.clone();
            if page.done {
                break;
            }
            assert!(!page.data.is_empty(), "a page that is not done must hold items");
            iterator = page.iterator.clone();
            assert!(pages <= n + 1, "paging does not end");
        }
        assert_eq!(seen, expected, "forward walk with limit {limit}");

        // Back from the last page: each prevIterator yields the page before.
        if n > limit {
            let mut back = Vec::new();
            let mut iterator = Some(last_prev.expect("the last page has a prevIterator"));
            loop {
                let page = fetch(iterator.clone()).await;
                let mut ids: Vec<String> = page.data.iter().map(|a| a.id.to_string()).collect();
                ids.extend(back);
                back = ids;
                if page.done || page.data.is_empty() {
                    break;
                }
                iterator = page.prev_iterator.clone();
            }
            let last_page_len = n - (n - 1) / limit * limit;
            assert_eq!(back, expected[..n - last_page_len], "backward walk with limit {limit}");
        }
    }));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn pages_cover_every_item_once_in_order(n in 0usize..30, limit in 1usize..9, descending in any::<bool>()) {
        walk(n, limit, descending);
    }
}
