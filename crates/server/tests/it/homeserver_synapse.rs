//! `SynapseHomeserver` against a real Synapse (`matrix-synapse` from PyPI,
//! see `scripts/synapse.sh`), and the job queue surviving a stopped Synapse.

use std::{collections::BTreeSet, sync::Arc};

use vestibule_domain::{
    MockClock,
    job::{JobStatus, retry_delay},
};
use vestibule_server::{
    homeserver::{DeviceOutcome, Homeserver, HomeserverError, ProvisionOutcome, ProvisionRequest},
    jobs::{self, JobWorker, ProvisionUser, WorkerSettings},
};

use crate::homeserver_support::{Synapse, Vestibule, synapse_venv};

fn devices(synapse: &Synapse, localpart: &str) -> BTreeSet<String> {
    synapse
        .sql(&format!(
            "SELECT device_id FROM devices WHERE user_id = '@{localpart}:localhost' AND NOT hidden"
        ))
        .into_iter()
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn synapse_mas_api() {
    let Some(venv) = synapse_venv("synapse_mas_api") else {
        return;
    };
    let vestibule = Vestibule::start().await;
    let synapse = Synapse::start(&venv, vestibule.port).await;
    let hs = synapse.client();
    assert_eq!(hs.mxid("alice"), "@alice:localhost");

    // Availability and creation.
    assert_eq!(hs.is_localpart_available("alice").await, Ok(true));
    assert!(
        matches!(
            hs.is_localpart_available("Not Valid").await,
            Err(HomeserverError::InvalidUsername(_))
        ),
        "upper case and spaces are not localpart characters"
    );
    assert_eq!(hs.query_user("alice").await, Err(HomeserverError::NotFound));
    assert_eq!(
        hs.provision_user(&ProvisionRequest::new("alice")).await,
        Ok(ProvisionOutcome::Created)
    );
    let alice = hs.query_user("alice").await.unwrap();
    assert_eq!(alice.user_id, "@alice:localhost");
    assert_eq!(
        alice.display_name.as_deref(),
        Some("alice"),
        "Synapse defaults the display name to the localpart"
    );
    assert!(!alice.is_deactivated);
    assert_eq!(hs.is_localpart_available("alice").await, Ok(false));

    // Overlapping provisions of one new user (the job and a token's inline
    // provision): every one succeeds, exactly one creates the user, and the
    // display name is one that was asked for (not Synapse's default).
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..8 {
        let hs = synapse.client();
        racers.spawn(async move {
            hs.provision_user(&ProvisionRequest::new("racer").set_displayname(format!("Racer {i}")))
                .await
        });
    }
    let outcomes = racers.join_all().await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == Ok(ProvisionOutcome::Created))
            .count(),
        1,
        "{outcomes:?}"
    );
    let racer = hs.query_user("racer").await.unwrap();
    assert!(
        racer
            .display_name
            .as_deref()
            .is_some_and(|n| n.starts_with("Racer ")),
        "{racer:?}"
    );

    // Update: display name, avatar, emails, lock.
    assert_eq!(
        hs.provision_user(
            &ProvisionRequest::new("alice")
                .set_displayname("Alice Liddell")
                .set_avatar_url("mxc://localhost/avatar")
                .set_emails(vec!["alice@example.org".to_owned()])
                .locked(true)
        )
        .await,
        Ok(ProvisionOutcome::Updated)
    );
    let alice = hs.query_user("alice").await.unwrap();
    assert_eq!(alice.display_name.as_deref(), Some("Alice Liddell"));
    assert_eq!(alice.avatar_url.as_deref(), Some("mxc://localhost/avatar"));
    assert_eq!(
        synapse
            .sql("SELECT medium, address FROM user_threepids WHERE user_id = '@alice:localhost'"),
        ["email|alice@example.org"]
    );
    assert_eq!(
        synapse.sql("SELECT locked FROM users WHERE name = '@alice:localhost'"),
        ["1"]
    );
    // Replacing the email list; unlocking; an unset avatar.
    hs.provision_user(
        &ProvisionRequest::new("alice")
            .set_emails(vec!["liddell@example.org".to_owned()])
            .unset_avatar_url()
            .locked(false),
    )
    .await
    .unwrap();
    assert_eq!(
        synapse.sql("SELECT address FROM user_threepids WHERE user_id = '@alice:localhost'"),
        ["liddell@example.org"]
    );
    assert_eq!(
        synapse.sql("SELECT locked FROM users WHERE name = '@alice:localhost'"),
        ["0"]
    );
    let alice = hs.query_user("alice").await.unwrap();
    assert_eq!(alice.avatar_url, None);
    assert_eq!(
        alice.display_name.as_deref(),
        Some("Alice Liddell"),
        "kept when not mentioned"
    );

    // Display name on its own.
    hs.set_displayname("alice", "Al").await.unwrap();
    assert_eq!(
        hs.query_user("alice")
            .await
            .unwrap()
            .display_name
            .as_deref(),
        Some("Al")
    );
    hs.unset_displayname("alice").await.unwrap();
    assert_eq!(hs.query_user("alice").await.unwrap().display_name, None);

    // Devices.
    assert_eq!(
        hs.upsert_device("alice", "DEVICEONE1", Some("Phone")).await,
        Ok(DeviceOutcome::Created)
    );
    assert_eq!(
        hs.upsert_device("alice", "DEVICEONE1", None).await,
        Ok(DeviceOutcome::Existed)
    );
    hs.upsert_device("alice", "DEVICETWO2", None).await.unwrap();
    hs.upsert_device("alice", "DEVICE3333", None).await.unwrap();
    assert_eq!(
        devices(&synapse, "alice"),
        set(&["DEVICE3333", "DEVICEONE1", "DEVICETWO2"])
    );
    hs.update_device_display_name("alice", "DEVICEONE1", "Laptop")
        .await
        .unwrap();
    assert_eq!(
        synapse.sql(
            "SELECT display_name FROM devices \
             WHERE user_id = '@alice:localhost' AND device_id = 'DEVICEONE1'"
        ),
        ["Laptop"]
    );
    hs.sync_devices("alice", &set(&["DEVICEONE1", "DEVICENEW4"]))
        .await
        .unwrap();
    assert_eq!(
        devices(&synapse, "alice"),
        set(&["DEVICENEW4", "DEVICEONE1"]),
        "extra devices deleted, missing ones added"
    );
    hs.delete_device("alice", "DEVICENEW4").await.unwrap();
    assert_eq!(devices(&synapse, "alice"), set(&["DEVICEONE1"]));
    assert_eq!(
        hs.upsert_device("nobody", "DEVICEONE1", None).await,
        Err(HomeserverError::NotFound)
    );

    // Cross-signing reset approval (a no-op without keys, but accepted).
    hs.allow_cross_signing_reset("alice").await.unwrap();
    assert_eq!(
        hs.allow_cross_signing_reset("nobody").await,
        Err(HomeserverError::NotFound)
    );

    // The shared secret is checked.
    let wrong = synapse.client_with_secret("not-the-secret");
    assert_eq!(
        wrong.query_user("alice").await,
        Err(HomeserverError::Forbidden)
    );
    assert_eq!(
        wrong
            .provision_user(&ProvisionRequest::new("mallory"))
            .await,
        Err(HomeserverError::Forbidden)
    );
    assert_eq!(hs.is_localpart_available("mallory").await, Ok(true));

    // Deactivation and reactivation.
    hs.delete_user("alice", false).await.unwrap();
    assert!(hs.query_user("alice").await.unwrap().is_deactivated);
    assert!(
        devices(&synapse, "alice").is_empty(),
        "deactivation deletes the devices"
    );
    hs.reactivate_user("alice").await.unwrap();
    assert!(!hs.query_user("alice").await.unwrap().is_deactivated);

    // Erasure removes the profile too.
    hs.provision_user(&ProvisionRequest::new("bob").set_displayname("Bob"))
        .await
        .unwrap();
    hs.delete_user("bob", true).await.unwrap();
    let bob = hs.query_user("bob").await.unwrap();
    assert!(bob.is_deactivated);
    assert_eq!(bob.display_name, None);
    assert_eq!(
        hs.delete_user("nobody", false).await,
        Err(HomeserverError::NotFound)
    );
}

/// A provisioning job scheduled while Synapse is down fails, is rescheduled
/// with backoff, and reaches Synapse once it is back. Jobs Synapse refuses
/// outright (400 for an invalid localpart, 404 for an unknown user) fail at
/// their first attempt.
#[tokio::test]
async fn provisioning_job_survives_a_stopped_synapse() {
    let Some(venv) = synapse_venv("provisioning_job_survives_a_stopped_synapse") else {
        return;
    };
    let vestibule = Vestibule::start().await;
    let mut synapse = Synapse::start(&venv, vestibule.port).await;
    let hs = Arc::new(synapse.client());

    synapse.stop().await;
    let down = hs.query_user("carol").await;
    assert!(
        matches!(down, Err(HomeserverError::Unavailable(_))),
        "a stopped Synapse is unavailable, got {down:?}"
    );

    let repos = vestibule.app.state.repos.clone();
    let clock = Arc::new(MockClock::default());
    let mut rng = vestibule.app.state.rng.rng();
    let mut repo = repos.write().await.unwrap();
    let job = jobs::schedule_provision_user(
        &mut *repo,
        &mut rng,
        clock.as_ref(),
        ProvisionUser {
            localpart: "carol".to_owned(),
            display_name: Some("Carol".to_owned()),
            emails: vec!["carol@example.org".to_owned()],
            locked: false,
        },
    )
    .await
    .unwrap();
    repo.save().await.unwrap();

    let worker = JobWorker::new(
        repos.clone(),
        clock.clone(),
        hs.clone(),
        WorkerSettings::default(),
    );
    let report = worker.run_once().await.unwrap();
    assert_eq!((report.reserved, report.rescheduled), (1, 1), "{report:?}");
    let stored = repos
        .read()
        .await
        .unwrap()
        .jobs()
        .lookup(job.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, JobStatus::Scheduled);
    assert_eq!(stored.attempts, 1);
    assert_eq!(stored.scheduled_at, clock.now() + retry_delay(1));
    assert!(
        stored
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("unavailable")),
        "{stored:?}"
    );

    synapse.start_again().await;
    assert_eq!(
        worker.run_once().await.unwrap().reserved,
        0,
        "the job waits for its backoff"
    );
    clock.advance(retry_delay(1));
    let report = worker.run_once().await.unwrap();
    assert_eq!((report.reserved, report.completed), (1, 1), "{report:?}");
    let stored = repos
        .read()
        .await
        .unwrap()
        .jobs()
        .lookup(job.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, JobStatus::Completed);
    assert_eq!(stored.attempts, 2);

    let carol = hs.query_user("carol").await.unwrap();
    assert_eq!(carol.user_id, "@carol:localhost");
    assert_eq!(carol.display_name.as_deref(), Some("Carol"));
    assert_eq!(
        synapse.sql("SELECT address FROM user_threepids WHERE user_id = '@carol:localhost'"),
        ["carol@example.org"]
    );

    // Permanent refusals: no backoff.
    let mut repo = repos.write().await.unwrap();
    let invalid = jobs::schedule_provision_user(
        &mut *repo,
        &mut rng,
        clock.as_ref(),
        ProvisionUser {
            localpart: "Not-Valid".to_owned(),
            display_name: None,
            emails: Vec::new(),
            locked: false,
        },
    )
    .await
    .unwrap();
    let unknown = jobs::schedule_delete_user(&mut *repo, &mut rng, clock.as_ref(), "nobody", false)
        .await
        .unwrap();
    repo.save().await.unwrap();
    let report = worker.run_once().await.unwrap();
    assert_eq!(
        (report.reserved, report.failed, report.rescheduled),
        (2, 2, 0),
        "{report:?}"
    );
    for (id, error) in [
        (invalid.id, "rejects the localpart"),
        (unknown.id, "no such user"),
    ] {
        let stored = repos
            .read()
            .await
            .unwrap()
            .jobs()
            .lookup(id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((stored.status, stored.attempts), (JobStatus::Failed, 1));
        assert!(
            stored
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains(error)),
            "{error:?} recorded: {stored:?}"
        );
    }
}
