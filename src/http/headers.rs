//! Header name helpers shared by requests and responses: hop-by-hop fields, token lists.
