//! Making the device findable: the homeserver's pkarr record on the Mainline DHT
//! (`packet` builds it, `publisher` keeps it there at the `address` others learn), the users' records kept alive
//! (`users`), and the DHT client they share (`dht`), which the pkarr relay endpoint uses too.
//! In the household: the router port mapping (`upnp`, its rules in `mapping`, its report
//! in `mapper_state`, the
//! calls to the router in `router`: UPnP IGD, or NAT-PMP and PCP through `port_control`
//! with their messages in `natpmp` and `pcp`), the IPv6 pinhole (`pinhole`, the box's
//! address and IPv6 gateway read by `ipv6`), the LAN announcement (`mdns`), all
//! started and stopped by `household`, and the report `pubky-edge status` prints
//! (`reachability`). `worker` holds what the workers share: backoff and state files.

pub mod address;
pub mod dht;
pub mod household;
pub mod ipv6;
pub mod mapper_state;
pub mod mapping;
pub mod mdns;
pub mod natpmp;
pub mod packet;
pub mod pcp;
pub mod pinhole;
pub mod port_control;
pub mod publisher;
pub mod reachability;
pub mod relay;
pub mod router;
pub mod tunnel_state;
pub mod upnp;
pub mod users;
pub mod verdict;
pub mod worker;

pub use address::PublicAddress;
pub use dht::{DhtClient, DhtSettings};
pub use publisher::{PublishStatus, Publisher};
pub use users::UsersRepublisher;
