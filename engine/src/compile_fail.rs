//! What must not compile, as `compile_fail` doctests (run by `cargo test --doc`). Each
//! block has a twin that compiles in the item docs (`WriteTxn`, `WriteTree::range`,
//! `Tree::range`, `TreeDef`), so a failure here is the rule, not a typo.
//!
//! The write transaction stays on its thread (it holds the writer lock's guard):
//!
//! ```compile_fail,E0277
//! # let db = arbor::Db::create("x", arbor::Options::default()).unwrap();
//! let tx = db.begin_write().unwrap();
//! std::thread::spawn(move || tx.commit());
//! ```
//!
//! So does a range over it (a snapshot's range moves; see `Tree::range`):
//!
//! ```compile_fail,E0277
//! # let db = arbor::Db::create("x", arbor::Options::default()).unwrap();
//! let tx = db.begin_write().unwrap();
//! let range = tx.tree("t").unwrap().iter().unwrap();
//! std::thread::scope(|s| {
//!     s.spawn(move || range.count());
//! });
//! ```
//!
//! A tree handle cannot outlive its transaction, nor be used after `commit`:
//!
//! ```compile_fail,E0505
//! # let db = arbor::Db::create("x", arbor::Options::default()).unwrap();
//! let tx = db.begin_write().unwrap();
//! let mut t = tx.tree("t").unwrap();
//! tx.commit().unwrap();
//! t.insert(b"k", b"v").unwrap();
//! ```
//!
//! ```compile_fail,E0597
//! # let db = arbor::Db::create("x", arbor::Options::default()).unwrap();
//! let t = {
//!     let tx = db.begin_write().unwrap();
//!     tx.tree("t").unwrap()
//! };
//! ```
//!
//! A typed tree takes its own key and value types only:
//!
//! ```compile_fail,E0277
//! # let db = arbor::Db::create("x", arbor::Options::default()).unwrap();
//! const USERS: arbor::TreeDef<u64, str> = arbor::TreeDef::new("users");
//! let tx = db.begin_write().unwrap();
//! tx.open(USERS).unwrap().insert("alice", "admin").unwrap();
//! ```
//!
//! ```compile_fail,E0308
//! # let db = arbor::Db::create("x", arbor::Options::default()).unwrap();
//! const USERS: arbor::TreeDef<u64, str> = arbor::TreeDef::new("users");
//! let tx = db.begin_write().unwrap();
//! let name: Option<u64> = tx.open(USERS).unwrap().get(1u64).unwrap();
//! ```
//!
//! A savepoint is not a transaction: it cannot commit.
//!
//! ```compile_fail,E0599
//! # let db = arbor::Db::create("x", arbor::Options::default()).unwrap();
//! let tx = db.begin_write().unwrap();
//! tx.savepoint().unwrap().commit();
//! ```
