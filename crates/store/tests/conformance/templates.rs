//! Message templates (issue 22): per account, unique names, update and
//! removal, gone with their account.

use crate::support::Backend;
use posthorn_store::*;

fn template(id: &str, account_id: i64, name: &str, at: i64) -> Template {
    Template {
        id: id.into(),
        account_id,
        name: name.into(),
        subject: "Hello {{name}}".into(),
        text: Some("Hi {{name}}".into()),
        html: None,
        created_at: at,
        updated_at: at,
    }
}

pub async fn templates_are_per_account_unique_by_name_and_go_with_it(b: &Backend) {
    let store = b.store();
    let a = store.create_account("shop").await.unwrap().id;
    let other = store.create_account("other").await.unwrap().id;
    let t = store.now();

    let welcome = template("tpl_1", a, "welcome", t);
    store.add_template(&welcome).await.unwrap();
    let mut receipt = template("tpl_2", a, "receipt", t);
    receipt.html = Some("<p>{{total}}</p>".into());
    receipt.text = None;
    store.add_template(&receipt).await.unwrap();
    // The same name in another account is another template.
    store
        .add_template(&template("tpl_3", other, "welcome", t))
        .await
        .unwrap();
    // A name is unique in its account.
    assert!(matches!(
        store
            .add_template(&template("tpl_4", a, "welcome", t))
            .await,
        Err(StoreError::Duplicate(_))
    ));

    assert_eq!(store.template(a, "tpl_1").await.unwrap(), welcome);
    assert_eq!(store.template_by_name(a, "receipt").await.unwrap(), receipt);
    // Another account's id is not found.
    assert!(matches!(
        store.template(other, "tpl_1").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.template_by_name(a, "nope").await,
        Err(StoreError::NotFound(_))
    ));
    let names: Vec<String> = store
        .templates(a)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["receipt", "welcome"]);

    // Update: everything but the id, account and creation time.
    let mut changed = welcome.clone();
    changed.name = "welcome-v2".into();
    changed.html = Some("<b>{{name}}</b>".into());
    changed.updated_at = t + 5;
    store.update_template(&changed).await.unwrap();
    assert_eq!(store.template(a, "tpl_1").await.unwrap(), changed);
    let mut clash = changed.clone();
    clash.name = "receipt".into();
    assert!(matches!(
        store.update_template(&clash).await,
        Err(StoreError::Duplicate(_))
    ));
    let mut elsewhere = changed.clone();
    elsewhere.account_id = other;
    assert!(matches!(
        store.update_template(&elsewhere).await,
        Err(StoreError::NotFound(_))
    ));

    assert!(!store.remove_template(other, "tpl_2").await.unwrap());
    assert!(store.remove_template(a, "tpl_2").await.unwrap());
    assert!(!store.remove_template(a, "tpl_2").await.unwrap());
    assert_eq!(store.templates(a).await.unwrap().len(), 1);

    // An account's templates go with it, and only its.
    store.remove_account(a).await.unwrap();
    assert!(matches!(
        store.template(a, "tpl_1").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.templates(other).await.unwrap().len(), 1);
}
