//! Deploy targets of DESIGN.md "Build and deploy": each takes the built artifact and
//! puts it where the environment serves it.

pub mod static_site;
