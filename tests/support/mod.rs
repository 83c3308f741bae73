pub mod dovecot;
pub mod introspection;
