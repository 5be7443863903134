//! The store conformance suite: what every [`posthorn_store::Store`]
//! must do, written once against the trait and run against each backend.
//!
//! A case is an `async fn(&Backend)` in one of the modules below; it uses
//! only the `Store` trait (`Arc<dyn Store>`, never a backend's own
//! methods) and takes its times from `Store::now()`. [`all_cases!`] turns
//! the case list into one `#[tokio::test]` per (backend, case), named
//! `<backend>::<module>::<case>`, so `cargo test -p posthorn-store --test
//! conformance sqlite::` runs one backend. What only one backend has (the
//! SQLite store's commit counters, migrations, fresh contents, backup)
//! is tested beside that backend's code, not here.

mod accounts;
mod api_tables;
mod basics;
mod console;
mod group_commit;
mod lockouts;
mod nodes;
mod queue;
mod support;
mod templates;
mod unsubscribe;

/// One `#[tokio::test]` per case, in a module per case module, for the
/// backend `$open` opens (`async fn() -> Option<Backend>`; `None` skips).
macro_rules! case_tests {
    ($open:path; $($module:ident { $($case:ident),* $(,)? })*) => {
        $(
            mod $module {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        let Some(backend) = $open().await else {
                            return;
                        };
                        crate::support::run(&backend, crate::$module::$case(&backend)).await;
                    }
                )*
            }
        )*
    };
}

/// Every case of the suite, for the backend `$open` opens. A new case is
/// one line here and its function in its module.
macro_rules! all_cases {
    ($open:path) => {
        case_tests! { $open;
            basics {
                a_fresh_store_is_empty,
                now_is_the_system_clock_within_seconds,
            }
            accounts {
                credentials_settings_and_duplicates,
                remove_sender_api_user_and_label,
                remove_domain_is_refused_while_senders_at_it_exist,
                remove_account_is_refused_while_its_mail_is_pending,
                adding_to_a_removed_account_is_not_found,
                remove_account_takes_all_of_its_rows_and_nothing_else,
            }
            queue {
                concurrent_enqueues_are_all_stored_and_survive_reopen,
                claims_leases_outcomes_suppression_and_purge,
                claims_leave_out_the_domains_asked,
            }
            api_tables {
                api_keys_are_per_account_or_admin,
                listing_filters_page_and_statistics_count,
                webhook_events_are_written_with_the_status_change_and_retried,
                a_test_event_goes_to_one_webhook_and_its_deliveries_are_listed,
            }
            lockouts {
                distinct_failures_lock_one_user_from_one_address,
                failures_out_of_the_window_do_not_count,
                spraying_many_users_locks_the_whole_address,
                the_whole_address_lockout_comes_before_a_users,
                zero_means_no_lockout,
                clearing_ends_lockouts_and_forgets_failures_and_survives_reopen,
            }
            group_commit {
                a_failing_job_fails_only_its_own_caller,
                more_writes_than_the_queue_holds_all_commit,
                a_batch_is_stored_all_or_none,
            }
            console {
                console_sessions_are_kept_moved_and_removed,
                messages_list_newest_first_when_asked,
            }
            templates {
                templates_are_per_account_unique_by_name_and_go_with_it,
            }
            unsubscribe {
                an_unsubscribe_suppresses_once_and_makes_one_event,
                opens_and_clicks_are_recorded_summed_and_capped,
            }
            nodes {
                heartbeats_list_nodes_with_the_leases_they_hold,
                a_dead_nodes_leases_are_taken_over_and_claimed_by_another,
                old_nodes_without_leases_are_forgotten,
                a_nodes_report_is_kept_beside_its_heartbeat,
            }
        }
    };
}

/// The embedded store, always: a new data directory per case.
mod sqlite {
    all_cases!(crate::support::sqlite);
}

/// PostgreSQL (issue 18): a shared database, a schema of its own per
/// case, when `POSTHORN_TEST_POSTGRES_URL` is set; otherwise each test
/// prints "skipped: POSTHORN_TEST_POSTGRES_URL is unset" and passes.
mod postgres {
    all_cases!(crate::support::postgres);
}
