//! The vocabulary the actor systems share (design.md "Messages between the systems"): for each
//! system, the messages it takes from the others, the types they carry and the handle that
//! sends them. A system imports these faces, never another system's module, so the import
//! graph of the systems has no circle (`actors/tests/layering.rs` checks it); they are what will
//! cross nodes, as their protobuf twins, once the systems run on several.
//!
//! A handle is started by its system (`Rq::spawn` is in [`crate::rq`]); an actor that also
//! takes messages of its own (a timer's, its sockets') keeps them out of its face, and the
//! others reach it through a [`ractor::DerivedActorRef`] of the face's messages.

pub mod agent_state;
pub mod bus;
pub mod call_state;
pub mod ors;
pub mod registrar;
pub mod rq;
pub mod sip_cluster;
pub mod sip_proxy;

/// The conversions by which `$msg::$variant` carries a face's `$face` to an actor that takes
/// messages of its own too: a [`ractor::DerivedActorRef`] of `$face` reaches the actor.
macro_rules! wraps {
    ($msg:ident :: $variant:ident ( $face:ty )) => {
        impl From<$face> for $msg {
            fn from(message: $face) -> Self {
                $msg::$variant(message)
            }
        }

        impl TryFrom<$msg> for $face {
            type Error = ();

            fn try_from(message: $msg) -> Result<Self, ()> {
                match message {
                    $msg::$variant(message) => Ok(message),
                    _ => Err(()),
                }
            }
        }
    };
}

pub(crate) use wraps;
