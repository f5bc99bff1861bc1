//! The issue-17 "new user" program: a table plus a secondary index in one transaction,
//! typed `u64` keys, a prefix scan, `pop_first`, `retain`, a savepoint rollback and a hot
//! backup while a writer runs. `cargo run -p arbor --example new_user`

use arbor::{Db, Options, TreeDef};

const ORDERS: TreeDef<u64, str> = TreeDef::new("orders");
const BY_CUSTOMER: TreeDef<(String, u64), ()> = TreeDef::new("orders_by_customer");

fn main() -> arbor::Result<()> {
    let dir = std::env::temp_dir().join(format!("arbor-new-user-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let db = Db::open_or_create(dir.join("shop.arbor"), Options::default())?;
    let tx = db.begin_write()?;
    let mut orders = tx.open(ORDERS)?;
    let mut index = tx.open(BY_CUSTOMER)?;
    for id in 1..=100u64 {
        let customer = format!("customer-{}", id % 7);
        orders.insert(id, customer.as_str())?;
        index.insert((customer, id), ())?;
    }
    let sp = tx.savepoint()?;
    orders.insert(1000, "typo")?;
    tx.rollback_to(&sp)?;
    assert!(orders.get(1000)?.is_none());
    assert_eq!(orders.pop_first()?, Some((1, "customer-1".to_string())));
    index.remove(("customer-1".to_string(), 1))?;
    assert_eq!(orders.retain(|id, _| id % 10 != 0)?, 10);
    tx.commit()?;

    let snap = db.snapshot()?;
    let raw = snap.tree("orders_by_customer")?.expect("committed");
    let mut prefix = Vec::new();
    arbor::Key::encode_nested("customer-3", &mut prefix);
    println!("customer-3 has {} orders", raw.prefix(&prefix)?.count());

    let writer = {
        let db = db.clone();
        std::thread::spawn(move || -> arbor::Result<()> {
            for id in 200..300u64 {
                let tx = db.begin_write()?;
                tx.open(ORDERS)?.insert(id, "late")?;
                tx.commit()?;
            }
            Ok(())
        })
    };
    let info = db.backup_to(dir.join("backup.arbor"), Options::default())?;
    writer.join().expect("writer")?;
    println!("backup: {} entries in {} trees as of seq {}", info.entries, info.trees, info.seq);
    drop(db);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
