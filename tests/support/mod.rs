pub mod dovecot;
pub mod introspection;
pub mod tokens;
