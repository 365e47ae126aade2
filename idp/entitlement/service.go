package entitlement

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/essc-project/essc/idp/card"
	"github.com/essc-project/essc/signing"
	"github.com/essc-project/essc/storage"
)

// Scope an agency client needs (client_credentials grant).
const ScopeManage = "essc.entitlement.manage"

// Benefit types.
const (
	BenefitEnterprisePension = "enterprise_pension"
	BenefitResidentPension   = "urban_rural_resident_pension"
	BenefitWorkInjury        = "work_injury_annuity"
)

// Certification methods.
const (
	MethodApp      = "app"       // in the e-card app
	MethodPortalQR = "portal_qr" // agency portal, QR login with purpose pension_certification
	MethodFamily   = "family"    // a relative's app starts it, the holder's liveness completes it
)

// ACRFace is the only acr that certifies; AMRFace must be in the amr.
const (
	ACRFace = "urn:essc:acr:face"
	AMRFace = "face"
)

// Event types of the agency feed (and webhooks).
const (
	EventRegistered = "beneficiary.registered"
	EventUpdated    = "beneficiary.updated"
	EventRemoved    = "beneficiary.removed"
	EventCertified  = "beneficiary.certified"
	EventDue        = "beneficiary.due"
	EventSuspended  = "beneficiary.suspended"
	EventTerminated = "beneficiary.terminated"
)

// CardConsumer is the outbox cursor name of the termination consumer.
const CardConsumer = "entitlement.termination"

// Errors of the service; the handler maps them to fixed HTTP answers.
var (
	ErrInvalidRequest     = errors.New("entitlement: invalid request")
	ErrNotFound           = errors.New("entitlement: not found")
	ErrExists             = errors.New("entitlement: already registered")
	ErrConflict           = errors.New("entitlement: version conflict")
	ErrUnavailable        = errors.New("entitlement: temporarily unavailable")
	ErrNotFaceLevel       = errors.New("entitlement: face-level authentication required")
	ErrCardNotLive        = errors.New("entitlement: no live card")
	ErrLiveness           = errors.New("entitlement: liveness not verified")
	ErrNoDelegation       = errors.New("entitlement: no valid delegation for the delegate")
	ErrNothingToCertify   = errors.New("entitlement: holder has no open beneficiary")
	ErrInvalidAttestation = errors.New("entitlement: invalid attestation")
)

// Registry is what the service reads from the durable registry
// (storage.Registry implements it).
type Registry interface {
	Holder(ctx context.Context, id string) (storage.Holder, error)
	HolderBySSN(ctx context.Context, ssn string) (storage.Holder, error)
	CardsOfHolder(ctx context.Context, holderID string) ([]storage.Card, error)
	ECard(ctx context.Context, id string) (storage.ECard, error)
	Client(ctx context.Context, id string) (storage.Client, error)
	DelegationsOfPrincipal(ctx context.Context, principalHolderID string) ([]storage.Delegation, error)
	storage.OutboxReader
}

// KeySource yields the active signing key of an algorithm (*signing.KeySet).
type KeySource interface {
	Active(alg string) (*signing.Key, error)
}

// LivenessVerifier checks face-liveness evidence of the holder of an e-card
// for a challenge — the same shape as idp/wallet's, so one verifier serves
// both. DevLiveness in idp/wallet is the development implementation.
type LivenessVerifier interface {
	VerifyLiveness(ctx context.Context, ecardID, challenge, evidence string) error
}

// Config configures New.
type Config struct {
	Store    storage.Entitlements
	Registry Registry
	Keys     KeySource
	// Liveness verifies evidence; nil refuses every certification.
	Liveness LivenessVerifier
	// PairwiseKey is the OIDC provider's pairwise-subject key.
	PairwiseKey []byte
	// Issuer is the intl issuer (base URL); gm attestations use Issuer+"/gm".
	Issuer string
	Now    func() time.Time
	Logger *slog.Logger
}

// Service is the entitlement domain. Safe for concurrent use.
type Service struct {
	cfg Config
	now func() time.Time
	log *slog.Logger
}

// New validates cfg.
func New(cfg Config) (*Service, error) {
	var problems []string
	if cfg.Store == nil {
		problems = append(problems, "Store")
	}
	if cfg.Registry == nil {
		problems = append(problems, "Registry")
	}
	if cfg.Keys == nil {
		problems = append(problems, "Keys")
	}
	if len(cfg.PairwiseKey) < 16 {
		problems = append(problems, "PairwiseKey (≥ 16 bytes)")
	}
	if cfg.Issuer == "" {
		problems = append(problems, "Issuer")
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("entitlement: config missing %s", strings.Join(problems, ", "))
	}
	s := &Service{cfg: cfg, now: cfg.Now, log: cfg.Logger}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	return s, nil
}

// mapErr turns storage sentinels into the service's.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrInvalidRequest), errors.Is(err, ErrNotFound), errors.Is(err, ErrExists),
		errors.Is(err, ErrConflict), errors.Is(err, ErrUnavailable):
		return err
	case errors.Is(err, storage.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	case errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, storage.ErrDuplicate):
		return fmt.Errorf("%w: %w", ErrExists, err)
	case errors.Is(err, storage.ErrConflict):
		return fmt.Errorf("%w: %w", ErrConflict, err)
	}
	return err
}

// ValidBenefit reports whether b is a known benefit type.
func ValidBenefit(b string) bool {
	return b == BenefitEnterprisePension || b == BenefitResidentPension || b == BenefitWorkInjury
}

// View is a beneficiary as an agency sees it, with the status at read time.
type View struct {
	ID                string    `json:"id"`
	SSN               string    `json:"ssn,omitempty"` // echoed in batch answers only
	SSNMasked         string    `json:"ssn_masked"`
	Benefit           string    `json:"benefit"`
	Anchor            string    `json:"anchor"` // YYYY-MM-DD (CST)
	Status            Status    `json:"status"`
	CertifiedAt       time.Time `json:"certified_at"`
	DueFrom           time.Time `json:"due_from"`
	ValidUntil        time.Time `json:"valid_until"`
	Method            string    `json:"method,omitempty"`
	Delegated         bool      `json:"delegated,omitempty"`
	TerminatedAt      time.Time `json:"terminated_at,omitzero"`
	TerminationReason string    `json:"termination_reason,omitempty"`
	Version           int64     `json:"version"`
}

func (s *Service) view(b storage.Beneficiary, now time.Time) View {
	return View{ID: b.ID, SSNMasked: b.SSNMasked, Benefit: b.Benefit, Anchor: b.Anchor.In(CST()).Format(time.DateOnly),
		Status: Current(b, now), CertifiedAt: b.CertifiedAt, DueFrom: b.DueFrom, ValidUntil: b.ValidUntil, Method: b.Method,
		Delegated: b.Act != "", TerminatedAt: b.TerminatedAt, TerminationReason: b.TerminationReason, Version: b.Version}
}

func eventPayload(b storage.Beneficiary, status Status, extra map[string]any) json.RawMessage {
	m := map[string]any{"beneficiary_id": b.ID, "benefit": b.Benefit, "status": status,
		"valid_until": b.ValidUntil.Unix(), "ssn_masked": b.SSNMasked}
	for k, v := range extra {
		m[k] = v
	}
	out, _ := json.Marshal(m)
	return out
}

func appendEvent(ctx context.Context, tx storage.EntitlementTx, typ string, b storage.Beneficiary, status Status, extra map[string]any) error {
	_, err := tx.AppendEntitlementEvent(ctx, storage.EntitlementEvent{AgencyID: b.AgencyID, BeneficiaryID: b.ID, Type: typ,
		Payload: eventPayload(b, status, extra)})
	return err
}

// RegisterInput registers one beneficiary.
type RegisterInput struct {
	SSN     string
	Benefit string
	// Anchor is the date of the last certification the agency knows of (or
	// the benefit's start): the first cycle runs from it. Not in the future.
	Anchor time.Time
}

func (s *Service) parseSSN(raw string) (string, error) {
	ssn, err := card.ParseSSN(raw, s.now())
	if err != nil {
		return "", fmt.Errorf("%w: ssn", ErrInvalidRequest)
	}
	return ssn.Raw(), nil
}

// Register creates the agency's beneficiary (ErrExists for the same SSN and
// benefit) and appends beneficiary.registered.
func (s *Service) Register(ctx context.Context, agency string, in RegisterInput) (View, error) {
	ssn, err := s.parseSSN(in.SSN)
	if err != nil {
		return View{}, err
	}
	now := s.now()
	if !ValidBenefit(in.Benefit) {
		return View{}, fmt.Errorf("%w: benefit", ErrInvalidRequest)
	}
	if in.Anchor.IsZero() || in.Anchor.After(now) {
		return View{}, fmt.Errorf("%w: anchor", ErrInvalidRequest)
	}
	holderID := ""
	switch h, err := s.cfg.Registry.HolderBySSN(ctx, ssn); {
	case err == nil:
		holderID = h.ID
	case !errors.Is(err, storage.ErrNotFound):
		return View{}, mapErr(err)
	}
	c := CycleFrom(in.Anchor)
	b := storage.Beneficiary{AgencyID: agency, SSN: ssn, HolderID: holderID, Benefit: in.Benefit, Anchor: in.Anchor,
		CertifiedAt: c.CertifiedAt, DueFrom: c.DueFrom, ValidUntil: c.ValidUntil}
	b.Status = StatusAt(c, now)
	err = s.cfg.Store.EntitlementTx(ctx, func(tx storage.EntitlementTx) error {
		var err error
		if b, err = tx.CreateBeneficiary(ctx, b); err != nil {
			return err
		}
		return appendEvent(ctx, tx, EventRegistered, b, b.Status, nil)
	})
	if err != nil {
		return View{}, mapErr(err)
	}
	return s.view(b, now), nil
}

// UpdateInput changes a beneficiary under optimistic concurrency.
type UpdateInput struct {
	Version int64
	Benefit string    // "" keeps it
	Anchor  time.Time // zero keeps it; a new anchor restarts the cycle only if the holder never certified here
}

// Update applies in (ErrConflict if Version moved, ErrNotFound for another
// agency's id or a terminated beneficiary's anchor) and appends
// beneficiary.updated.
func (s *Service) Update(ctx context.Context, agency, id string, in UpdateInput) (View, error) {
	now := s.now()
	if in.Benefit != "" && !ValidBenefit(in.Benefit) {
		return View{}, fmt.Errorf("%w: benefit", ErrInvalidRequest)
	}
	if !in.Anchor.IsZero() && in.Anchor.After(now) {
		return View{}, fmt.Errorf("%w: anchor", ErrInvalidRequest)
	}
	var out storage.Beneficiary
	err := s.cfg.Store.EntitlementTx(ctx, func(tx storage.EntitlementTx) error {
		b, err := tx.Beneficiary(ctx, agency, id)
		if err != nil {
			return err
		}
		if b.Version != in.Version {
			return storage.ErrConflict
		}
		if in.Benefit != "" {
			b.Benefit = in.Benefit
		}
		if !in.Anchor.IsZero() {
			b.Anchor = in.Anchor
			if b.Method == "" && b.Status != StatusTerminated {
				c := CycleFrom(in.Anchor)
				b.CertifiedAt, b.DueFrom, b.ValidUntil, b.Status = c.CertifiedAt, c.DueFrom, c.ValidUntil, StatusAt(c, now)
			}
		}
		if out, err = tx.UpdateBeneficiary(ctx, b); err != nil {
			return err
		}
		return appendEvent(ctx, tx, EventUpdated, out, Current(out, now), nil)
	})
	if err != nil {
		return View{}, mapErr(err)
	}
	return s.view(out, now), nil
}

// Remove deletes the agency's beneficiary and appends beneficiary.removed.
func (s *Service) Remove(ctx context.Context, agency, id string) error {
	now := s.now()
	return mapErr(s.cfg.Store.EntitlementTx(ctx, func(tx storage.EntitlementTx) error {
		b, err := tx.Beneficiary(ctx, agency, id)
		if err != nil {
			return err
		}
		if err := tx.DeleteBeneficiary(ctx, agency, id); err != nil {
			return err
		}
		return appendEvent(ctx, tx, EventRemoved, b, Current(b, now), nil)
	}))
}

// Get reads one of the agency's beneficiaries (ErrNotFound for another's).
func (s *Service) Get(ctx context.Context, agency, id string) (View, error) {
	b, err := s.cfg.Store.Beneficiary(ctx, agency, id)
	if err != nil {
		return View{}, mapErr(err)
	}
	return s.view(b, s.now()), nil
}

// Attestation returns the last attestation JWT of the agency's beneficiary
// (ErrNotFound when it never certified here).
func (s *Service) Attestation(ctx context.Context, agency, id string) (string, error) {
	b, err := s.cfg.Store.Beneficiary(ctx, agency, id)
	if err != nil {
		return "", mapErr(err)
	}
	if b.Attestation == "" {
		return "", fmt.Errorf("%w: no attestation yet", ErrNotFound)
	}
	return b.Attestation, nil
}

// MaxBatch is the most SSNs one batch call accepts.
const MaxBatch = 20000

// Batch reads the status of the agency's beneficiaries for up to MaxBatch
// SSNs. Malformed SSNs are ErrInvalidRequest (the whole call); unknown ones
// are returned in missing, in input order.
func (s *Service) Batch(ctx context.Context, agency string, ssns []string) (found []View, missing []string, err error) {
	if len(ssns) == 0 || len(ssns) > MaxBatch {
		return nil, nil, fmt.Errorf("%w: batch size", ErrInvalidRequest)
	}
	norm := make([]string, len(ssns))
	for i, raw := range ssns {
		if norm[i], err = s.parseSSN(raw); err != nil {
			return nil, nil, fmt.Errorf("%w: ssn at index %d", ErrInvalidRequest, i)
		}
	}
	bs, err := s.cfg.Store.BeneficiariesBySSN(ctx, agency, norm)
	if err != nil {
		return nil, nil, mapErr(err)
	}
	now := s.now()
	found = make([]View, len(bs))
	seen := make(map[string]bool, len(bs))
	for i, b := range bs {
		found[i] = s.view(b, now)
		found[i].SSN = b.SSN // the caller's own input, echoed to match answers to questions
		seen[b.SSN] = true
	}
	missing = []string{}
	for _, ssn := range norm {
		if !seen[ssn] {
			missing = append(missing, ssn)
			seen[ssn] = true
		}
	}
	return found, missing, nil
}

// Due pages the agency's beneficiaries whose validity ends in month
// (YYYY-MM, CST): those who must certify by that month's end.
func (s *Service) Due(ctx context.Context, agency, month, after string, limit int) ([]View, error) {
	m, err := time.ParseInLocation("2006-01", month, CST())
	if err != nil {
		return nil, fmt.Errorf("%w: month", ErrInvalidRequest)
	}
	// ValidUntil is the first instant after the last valid month.
	from, to := m.AddDate(0, 1, 0), m.AddDate(0, 2, 0)
	bs, err := s.cfg.Store.BeneficiariesValidUntil(ctx, agency, from, to, after, limit)
	if err != nil {
		return nil, mapErr(err)
	}
	now := s.now()
	out := make([]View, len(bs))
	for i, b := range bs {
		out[i] = s.view(b, now)
	}
	return out, nil
}

// Events reads the agency's feed after the cursor afterSeq.
func (s *Service) Events(ctx context.Context, agency string, afterSeq int64, limit int) ([]storage.EntitlementEvent, error) {
	if afterSeq < 0 {
		return nil, fmt.Errorf("%w: cursor", ErrInvalidRequest)
	}
	evs, err := s.cfg.Store.EntitlementEvents(ctx, agency, afterSeq, limit)
	return evs, mapErr(err)
}

// CertifyInput is one face-level certification of a holder.
type CertifyInput struct {
	HolderID string
	ECardID  string // the e-card whose device performed the confirmation
	Method   string // MethodApp | MethodPortalQR | MethodFamily
	ACR      string // must be ACRFace
	AMR      []string
	// Act is the delegate's holder id for MethodFamily (required then,
	// forbidden otherwise); the holder's own liveness is still required.
	Act              string
	Challenge        string // what the liveness evidence is bound to (e.g. QR transaction id)
	LivenessEvidence string
}

// Certification is the outcome for one beneficiary.
type Certification struct {
	BeneficiaryID string    `json:"beneficiary_id"`
	AgencyID      string    `json:"agency_id"`
	Benefit       string    `json:"benefit"`
	ValidUntil    time.Time `json:"valid_until"`
	Attestation   string    `json:"attestation"`
}

// Certify records a successful face-level certification of in.HolderID for
// every open (non-terminated) beneficiary of that person at every agency,
// signs one attestation per beneficiary and appends beneficiary.certified.
// It refuses: a non-face acr or an amr without face (ErrNotFaceLevel — a PIN
// login never certifies), an e-card or card that is not live
// (ErrCardNotLive), evidence the verifier rejects or no verifier
// (ErrLiveness), a family certification without a valid delegation
// (ErrNoDelegation), and a holder with nothing open (ErrNothingToCertify).
func (s *Service) Certify(ctx context.Context, in CertifyInput) ([]Certification, error) {
	if in.ACR != ACRFace || !slices.Contains(in.AMR, AMRFace) {
		return nil, ErrNotFaceLevel
	}
	switch in.Method {
	case MethodApp, MethodPortalQR:
		if in.Act != "" {
			return nil, fmt.Errorf("%w: act only for family certification", ErrInvalidRequest)
		}
	case MethodFamily:
		if in.Act == "" || in.Act == in.HolderID {
			return nil, fmt.Errorf("%w: family certification needs the delegate", ErrInvalidRequest)
		}
	default:
		return nil, fmt.Errorf("%w: method", ErrInvalidRequest)
	}
	if in.HolderID == "" || in.ECardID == "" {
		return nil, fmt.Errorf("%w: holder and e-card", ErrInvalidRequest)
	}
	reg := s.cfg.Registry
	holder, err := reg.Holder(ctx, in.HolderID)
	if err != nil {
		return nil, mapErr(err)
	}
	if err := s.checkLive(ctx, in); err != nil {
		return nil, err
	}
	if in.Method == MethodFamily {
		if err := s.checkDelegation(ctx, in.HolderID, in.Act); err != nil {
			return nil, err
		}
	}
	if s.cfg.Liveness == nil {
		return nil, fmt.Errorf("%w: no verifier configured", ErrLiveness)
	}
	if err := s.cfg.Liveness.VerifyLiveness(ctx, in.ECardID, in.Challenge, in.LivenessEvidence); err != nil {
		if errors.Is(err, storage.ErrUnavailable) {
			return nil, mapErr(err)
		}
		return nil, fmt.Errorf("%w: %w", ErrLiveness, err)
	}
	now := s.now()
	var out []Certification
	err = s.cfg.Store.EntitlementTx(ctx, func(tx storage.EntitlementTx) error {
		out = out[:0]
		bs, err := tx.BeneficiariesOfSSN(ctx, holder.SSN)
		if err != nil {
			return err
		}
		for _, b := range bs {
			prev := Current(b, now)
			nb, ok := ApplyCertification(b, now, in.Method, in.Act)
			if !ok {
				continue
			}
			nb.HolderID = in.HolderID
			client, err := reg.Client(ctx, b.AgencyID)
			if err != nil {
				return err
			}
			claims := s.claims(client, nb, in)
			if nb.Attestation, err = signAttestation(s.cfg.Keys, algFor(client.Profile), claims); err != nil {
				return err
			}
			if nb, err = tx.UpdateBeneficiary(ctx, nb); err != nil {
				return err
			}
			if err := appendEvent(ctx, tx, EventCertified, nb, nb.Status, map[string]any{
				"previous_status": prev, "method": in.Method, "delegated": in.Act != "",
				"certified_at": nb.CertifiedAt.Unix(), "attestation_jti": claims.JTI}); err != nil {
				return err
			}
			out = append(out, Certification{BeneficiaryID: nb.ID, AgencyID: nb.AgencyID, Benefit: nb.Benefit,
				ValidUntil: nb.ValidUntil, Attestation: nb.Attestation})
		}
		return nil
	})
	if err != nil {
		return nil, mapErr(err)
	}
	if len(out) == 0 {
		return nil, ErrNothingToCertify
	}
	return out, nil
}

func (s *Service) claims(client storage.Client, b storage.Beneficiary, in CertifyInput) AttestationClaims {
	sector := client.Sector
	if sector == "" {
		sector = client.ID
	}
	iss := s.cfg.Issuer
	if client.Profile == storage.ProfileGM {
		iss = strings.TrimSuffix(iss, "/") + "/gm"
	}
	c := AttestationClaims{Iss: iss, Sub: PairwiseSubject(s.cfg.PairwiseKey, sector, in.HolderID), Aud: client.ID,
		IAT: s.now().Unix(), Exp: b.ValidUntil.Unix(), JTI: newJTI(), BeneficiaryID: b.ID, Benefit: b.Benefit,
		CertifiedAt: b.CertifiedAt.Unix(), Method: in.Method, ValidUntil: b.ValidUntil.Unix()}
	if in.Act != "" {
		c.Act = &Act{Sub: PairwiseSubject(s.cfg.PairwiseKey, sector, in.Act)}
	}
	return c
}

// checkLive requires the e-card to be the holder's, active, on an active card.
func (s *Service) checkLive(ctx context.Context, in CertifyInput) error {
	e, err := s.cfg.Registry.ECard(ctx, in.ECardID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && (e.HolderID != in.HolderID || e.Status != storage.ECardActive)) {
		return ErrCardNotLive
	}
	if err != nil {
		return mapErr(err)
	}
	cards, err := s.cfg.Registry.CardsOfHolder(ctx, in.HolderID)
	if err != nil {
		return mapErr(err)
	}
	for _, c := range cards {
		if c.ID == e.CardID && c.Status == storage.CardActive {
			return nil
		}
	}
	return ErrCardNotLive
}

// checkDelegation requires a live agent/guardian delegation from holder to agent.
func (s *Service) checkDelegation(ctx context.Context, holder, agent string) error {
	ds, err := s.cfg.Registry.DelegationsOfPrincipal(ctx, holder)
	if err != nil {
		return mapErr(err)
	}
	now := s.now()
	for _, d := range ds {
		if d.AgentHolderID == agent && d.RevokedAt.IsZero() && !now.Before(d.ValidFrom) &&
			(d.ValidUntil.IsZero() || now.Before(d.ValidUntil)) {
			return nil
		}
	}
	return ErrNoDelegation
}

// Sweep appends beneficiary.due / beneficiary.suspended for up to limit
// beneficiaries whose stored status the clock has passed, and returns how
// many it moved. Each move is its own transaction under the version rule, so
// a concurrent certification wins and the sweep simply skips that row.
func (s *Service) Sweep(ctx context.Context, limit int) (int, error) {
	now := s.now()
	bs, err := s.cfg.Store.BeneficiariesToSweep(ctx, now, limit)
	if err != nil {
		return 0, mapErr(err)
	}
	moved := 0
	for _, b := range bs {
		next := Current(b, now)
		if next == b.Status {
			continue
		}
		// From certified straight to suspended (sweeper was down for the whole
		// due window): emit both, in order, so the feed tells the full story.
		var types []string
		if b.Status == StatusCertified && next == StatusSuspended {
			types = []string{EventDue, EventSuspended}
		} else if next == StatusDue {
			types = []string{EventDue}
		} else {
			types = []string{EventSuspended}
		}
		err := s.cfg.Store.EntitlementTx(ctx, func(tx storage.EntitlementTx) error {
			b.Status = next
			nb, err := tx.UpdateBeneficiary(ctx, b)
			if err != nil {
				return err
			}
			for _, typ := range types {
				st := StatusSuspended
				if typ == EventDue {
					st = StatusDue
				}
				if err := appendEvent(ctx, tx, typ, nb, st, nil); err != nil {
					return err
				}
			}
			return nil
		})
		switch {
		case errors.Is(err, storage.ErrConflict), errors.Is(err, storage.ErrNotFound):
			continue
		case err != nil:
			return moved, mapErr(err)
		}
		moved++
	}
	return moved, nil
}

// ConsumeCardEvents reads up to limit registry outbox events after the
// durable cursor CardConsumer and terminates, for each card.cancelled with
// reason death or emigration, every open beneficiary of that holder (reason
// and date = the event's). Terminating is idempotent, so a crash between
// acting and advancing the cursor is harmless. The cursor advances after
// each card.cancelled and after the last event read, not after every other
// event (a crash only makes those be read and skipped again). Returns
// events read.
func (s *Service) ConsumeCardEvents(ctx context.Context, limit int) (int, error) {
	reg := s.cfg.Registry
	cur, err := reg.Cursor(ctx, CardConsumer)
	if err != nil {
		return 0, mapErr(err)
	}
	evs, err := reg.Events(ctx, cur, limit)
	if err != nil {
		return 0, mapErr(err)
	}
	for i, e := range evs {
		cancelled := e.Type == "card.cancelled"
		if cancelled {
			if err := s.terminateFrom(ctx, e); err != nil {
				return 0, err
			}
		}
		if cancelled || i == len(evs)-1 {
			if err := reg.AdvanceCursor(ctx, CardConsumer, e.Seq); err != nil {
				return 0, mapErr(err)
			}
		}
	}
	return len(evs), nil
}

func (s *Service) terminateFrom(ctx context.Context, e storage.Event) error {
	var p struct {
		HolderID string `json:"holder_id"`
		Reason   string `json:"reason"`
	}
	if err := json.Unmarshal(e.Payload, &p); err != nil || p.HolderID == "" {
		s.log.WarnContext(ctx, "entitlement: malformed card.cancelled event skipped", "seq", e.Seq)
		return nil
	}
	if p.Reason != string(storage.CancelDeath) && p.Reason != string(storage.CancelEmigration) {
		return nil
	}
	h, err := s.cfg.Registry.Holder(ctx, p.HolderID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return mapErr(err)
	}
	return mapErr(s.cfg.Store.EntitlementTx(ctx, func(tx storage.EntitlementTx) error {
		bs, err := tx.BeneficiariesOfSSN(ctx, h.SSN)
		if err != nil {
			return err
		}
		for _, b := range bs {
			nb, changed := ApplyTermination(b, e.At, p.Reason)
			if !changed {
				continue
			}
			nb.HolderID = h.ID
			if nb, err = tx.UpdateBeneficiary(ctx, nb); err != nil {
				return err
			}
			if err := appendEvent(ctx, tx, EventTerminated, nb, StatusTerminated, map[string]any{
				"reason": p.Reason, "terminated_at": e.At.Unix()}); err != nil {
				return err
			}
		}
		return nil
	}))
}

// DeadLetters lists the agency's dead-lettered webhook events.
func (s *Service) DeadLetters(ctx context.Context, agency string, afterSeq int64, limit int) ([]storage.WebhookDeadLetter, error) {
	d, err := s.cfg.Store.WebhookDeadLetters(ctx, agency, afterSeq, limit)
	return d, mapErr(err)
}

// Redeliver makes every event with Seq ≥ fromSeq be delivered again.
func (s *Service) Redeliver(ctx context.Context, agency string, fromSeq int64) error {
	if fromSeq < 1 {
		return fmt.Errorf("%w: from_seq", ErrInvalidRequest)
	}
	return mapErr(s.cfg.Store.RedeliverWebhooks(ctx, agency, fromSeq))
}
