//! Compare a shadow response with the production response.
