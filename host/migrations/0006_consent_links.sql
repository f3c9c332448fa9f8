-- Consent links: the authorization URL a user is given points at this service's start page
-- (`/v1/oauth/start/<token>`; only the token's SHA-256 is kept), which says who asks for
-- which connection before sending the browser to the provider, and binds the consent to
-- the browser that continued from it: `binding_hash` is the SHA-256 of a cookie value the
-- callback requires. The sealed payload holds the PKCE verifier and the provider's
-- authorization URL.
ALTER TABLE oauth_states ADD COLUMN start_hash BLOB;
ALTER TABLE oauth_states ADD COLUMN binding_hash BLOB;
CREATE UNIQUE INDEX oauth_states_start ON oauth_states (start_hash);
