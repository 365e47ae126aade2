// Package admin is the outlet and operator API under /admin/v1 (DESIGN.md
// §9): card lifecycle actions (through card.Service, so the API and esscctl
// share one code path and one audit trail), OAuth client registration
// (Clients, also used by esscctl) and the audit log (list, verify).
//
// Authentication is the small Authenticator interface declared here; cmd
// wires the OIDC provider's client-credentials token introspection into it.
// Each route requires one scope (ScopeCards, ScopeClients, ScopeAudit).
// Errors are mapped to fixed JSON bodies in one place (writeError); internal
// error text never reaches the wire, it is logged with the request id.
//
// It must not import its parent idp, any cmd package, or a concrete storage
// backend; tests may open storage/sql.
package admin
