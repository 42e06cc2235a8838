//! Making the device findable: the homeserver's pkarr record on the Mainline DHT
//! (`packet` builds it, `publisher` keeps it there), the users' records kept alive
//! (`users`), and the DHT client they share (`dht`), which the pkarr relay endpoint uses too.

pub mod dht;
pub mod packet;
pub mod publisher;
pub mod relay;
pub mod users;

pub use dht::{DhtClient, DhtSettings};
pub use publisher::{PublicAddress, PublishStatus, Publisher};
pub use users::UsersRepublisher;
