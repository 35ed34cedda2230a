package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"ironbark/internal/nodeapi"
	"ironbark/internal/pki"
	"ironbark/internal/store"
)

// maxBody bounds request bodies: a heartbeat with many console tails of
// 64 KiB each stays well under it.
const maxBody = 32 << 20

// maxWait bounds how long an instances request may wait for a change.
const maxWait = 60 * time.Second

// Handler is the node API (docs/node-api.md). Every call but enroll needs a
// client certificate from the CA whose serial is the node's current one.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+nodeapi.PathEnroll, s.handleEnroll)
	mux.HandleFunc("POST "+nodeapi.PathHeartbeat, s.authed(s.handleHeartbeat))
	mux.HandleFunc("GET "+nodeapi.PathInstances, s.authed(s.handleInstances))
	if s.cfg.Blobs != nil {
		blobs := s.cfg.Blobs
		mux.Handle(nodeapi.PathBlobs, s.authed(func(w http.ResponseWriter, r *http.Request, _ Node) {
			blobs.ServeHTTP(w, r)
		}))
	}
	// Every statement a node's request runs takes the node lane's
	// connections, never the EC2 API's (store/lane.go).
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r.WithContext(store.NodeLane(r.Context())))
	})
}

func (s *Service) authed(h func(http.ResponseWriter, *http.Request, Node)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			writeErr(w, http.StatusUnauthorized, "a node certificate is required")
			return
		}
		leaf := r.TLS.VerifiedChains[0][0]
		n, err := s.authNode(r.Context(), leaf.Subject.CommonName, pki.SerialHex(leaf.SerialNumber), true)
		if err != nil {
			if !errors.Is(err, errNotEnrolled) && !errors.Is(err, store.ErrNotFound) {
				s.log.Error("node authentication", "node", leaf.Subject.CommonName, "err", err)
				writeErr(w, http.StatusInternalServerError, internalError)
				return
			}
			writeErr(w, http.StatusForbidden, errNotEnrolled.Error())
			return
		}
		h(w, r, n)
	}
}

func (s *Service) handleEnroll(w http.ResponseWriter, r *http.Request) {
	var req nodeapi.EnrollRequest
	if err := readJSON(r, &req); err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Hostname == "" || req.CSR == "" {
		writeErr(w, http.StatusBadRequest, "hostname and csr are required")
		return
	}
	var certPEM []byte
	n, err := s.enroll(r.Context(), enrollment{Token: req.Token, Hostname: req.Hostname, MACs: req.MACs, Capacity: req.Capacity,
		RemoteIP: remoteIP(r)}, s.cfg.Now(),
		func(nodeID string) (string, error) {
			c, serial, err := s.ca.SignNode([]byte(req.CSR), nodeID)
			certPEM = c
			return serial, err
		})
	switch {
	case errors.Is(err, ErrBadToken), errors.Is(err, ErrTokenIdentity):
		// The log says which host a bound token is for; the caller only
		// learns that it does not fit.
		s.log.Warn("enrollment refused", "host", req.Hostname, "macs", req.MACs, "remote", r.RemoteAddr, "why", err)
		msg := ErrBadToken.Error()
		if errors.Is(err, ErrTokenIdentity) {
			msg = ErrTokenIdentity.Error()
		}
		writeErr(w, http.StatusForbidden, msg)
		return
	case errors.Is(err, pki.ErrBadCSR):
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		// A fault here (the store, the CA) is the controller's: 5xx, which
		// the agent retries, and no internal detail to the caller.
		s.log.Error("enroll", "host", req.Hostname, "err", err)
		writeErr(w, http.StatusInternalServerError, internalError)
		return
	}
	s.invalidate()
	s.log.Info("node enrolled", "node", n.ID, "host", n.Hostname, "cluster", n.Cluster,
		"cores", n.Capacity.Cores, "memoryMiB", n.Capacity.MemoryMiB, "diskGiB", n.Capacity.DiskGiB,
		"declaredCores", n.Declared.Cores, "declaredMemoryMiB", n.Declared.MemoryMiB, "declaredDiskGiB", n.Declared.DiskGiB)
	writeJSON(w, nodeapi.EnrollResponse{NodeID: n.ID, Cluster: n.Cluster, Certificate: string(certPEM), CA: string(s.ca.CertPEM())})
}

func (s *Service) handleHeartbeat(w http.ResponseWriter, r *http.Request, n Node) {
	var req nodeapi.HeartbeatRequest
	if err := readJSON(r, &req); err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	// The name is the one enrolled (bound to the host for installed
	// nodes): a heartbeat cannot rename the node.
	ok, err := s.heartbeat(r.Context(), n, false, n.Hostname, req.Hypervisor, req.Capacity, s.cfg.Now(), s.cfg.Silences)
	for try := 0; errors.Is(err, errStaleNode) && try < 3; try++ {
		// The node as authentication knew it was not the row's: again,
		// on the row as it is.
		if n, err = s.authNode(r.Context(), n.ID, n.CertSerial, false); err == nil {
			ok, err = s.heartbeat(r.Context(), n, true, n.Hostname, req.Hypervisor, req.Capacity, s.cfg.Now(), s.cfg.Silences)
		}
	}
	if errors.Is(err, errNotEnrolled) || errors.Is(err, store.ErrNotFound) {
		ok, err = false, nil
	}
	if err == nil && !ok {
		writeErr(w, http.StatusForbidden, "node is not enrolled")
		return
	}
	if err == nil {
		err = s.cfg.Ledger.Observe(r.Context(), n.ID, req.Instances)
	}
	if err != nil {
		s.log.Error("heartbeat", "node", n.ID, "err", err)
		writeErr(w, http.StatusInternalServerError, internalError)
		return
	}
	if n.State != NodeUp {
		s.invalidate()
		s.log.Info("node is up", "node", n.ID, "host", n.Hostname)
	}
	writeJSON(w, nodeapi.HeartbeatResponse{NodeID: n.ID, Cluster: n.Cluster,
		IntervalSeconds: int(s.cfg.HeartbeatInterval / time.Second)})
}

func (s *Service) handleInstances(w http.ResponseWriter, r *http.Request, n Node) {
	// Parsed once: the held member and spec versions make the query
	// long, and every node sends one of these per wake-up (per stream,
	// when it streams).
	q := r.URL.Query()
	etag := q.Get("etag")
	wait := time.Duration(0)
	if v := q.Get("wait"); v != "" {
		sec, err := strconv.Atoi(v)
		if err != nil || sec < 0 {
			writeErr(w, http.StatusBadRequest, "wait: seconds expected")
			return
		}
		wait = min(time.Duration(sec)*time.Second, maxWait)
	}
	held, err := nodeapi.ParseHeldMembers(q.Get(nodeapi.QueryMembers))
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	heldSpecs, err := nodeapi.ParseHeldSpecs(q.Get(nodeapi.QuerySpecs))
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	// stream: every change until the wait ends is answered on this
	// response, a line each (nodeapi.Client.InstancesStream); otherwise
	// the first one is, and the node asks again.
	stream := false
	switch v := q.Get(nodeapi.QueryStream); v {
	case "", "0":
	case "1":
		stream = true
	default:
		writeErr(w, http.StatusBadRequest, fmt.Sprintf("%s: 1 or 0 expected, not %q", nodeapi.QueryStream, v))
		return
	}
	answer := func(d nodeapi.Desired) nodeapi.Desired {
		return keptSpecs(s.members.answerFor(d, held), heldSpecs)
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	// fresh is when the change the next answer must show was known to be
	// committed: the request's arrival, then each wake-up. The ledger's
	// reads for the answer start at or after it (reads shared with other
	// nodes woken at the same moment included).
	fresh := time.Now()
	// whole: read everything from the ledger, not from the node's last
	// answer (answers.go): for a node that holds nothing yet, and at
	// DesiredPoll's periodic reread.
	whole := etag == ""
	// turn ends a rebuild's turn (rebuildTurn), if it holds one; endTurn
	// calls it once the answer is encoded: what follows is the network's.
	turn := func() {}
	endTurn := func() {
		turn()
		turn = func() {}
	}
	defer endTurn()
	// sent: a stream's first answer is out, with its status and headers,
	// so a failure after it ends the stream instead of answering an error
	// (which the node would read as an empty desired state).
	sent := false
	fail := func(code int, msg string) {
		endTurn()
		if !sent {
			writeErr(w, code, msg)
		}
	}
	// read reads the node's desired state; on a failure it has answered.
	read := func() (nodeapi.Desired, bool) {
		d, err := s.desired(r.Context(), n.ID, fresh, whole)
		if err != nil {
			s.log.Error("desired instances", "node", n.ID, "err", err)
			fail(http.StatusInternalServerError, internalError)
			return d, false
		}
		return d, true
	}
	// send answers d, read after wt was taken; false when the node is
	// gone.
	rc := http.NewResponseController(w)
	send := func(wt *waiter, d nodeapi.Desired) bool {
		s.answered(wt, d.ETag)
		b := encodeJSON(answer(d))
		endTurn()
		if !stream {
			writeJSONBytes(w, b)
			return true
		}
		if !sent {
			w.Header().Set("Content-Type", nodeapi.StreamContentType)
			sent = true
		}
		if _, err := w.Write(b); err != nil {
			return false
		}
		if rc.Flush() != nil {
			return false
		}
		// The node holds what it was sent once it applied it, and it
		// applies the lines in order: the next line's deltas and kept
		// specs are against this one's.
		etag, held, heldSpecs = d.ETag, heldOf(d), specsOf(d)
		return true
	}
	// sendNow reads the state when the wait ends and answers it (a
	// stream, only if it changed): the reread that catches a lost
	// wake-up.
	sendNow := func() {
		wt := s.waiterFor(n.ID)
		if d, ok := read(); ok && (!stream || d.ETag != etag) {
			send(wt, d)
		}
	}
	// A node asks again as soon as it has applied an answer. When this
	// controller gave it that answer and no wake-up came since the answer's
	// read began, the state is the answer's: the request waits at once,
	// without reading it again (which, after every member-list update of
	// every node, doubled what the updates cost). The waiter is taken
	// first, so a wake-up right after the check is not missed.
	wt := s.waiterFor(n.ID)
	skipRead := etag != "" && wait > 0 && s.answeredWith(wt, etag)
	for {
		if !skipRead {
			d, ok := read()
			if !ok {
				return
			}
			if d.ETag != etag || wait == 0 {
				if !send(wt, d) || !stream || wait == 0 {
					return
				}
			}
		}
		skipRead = false
		endTurn()
		t := time.NewTimer(s.cfg.DesiredPoll)
		s.park(1)
		select {
		case <-ctx.Done():
			s.park(-1)
			t.Stop()
			if r.Context().Err() != nil || (stream && !s.stillEnrolled(r.Context(), n)) {
				return
			}
			// A stream then ends: the node opens the next one with the
			// etag it holds.
			sendNow()
			return
		case <-wt.ch:
			s.park(-1)
			fresh, whole = wt.woke, false
			if wt.members {
				var release func()
				if fresh, release = s.rebuildTurn(ctx, n.ID, fresh); release == nil {
					t.Stop()
					if r.Context().Err() != nil || stream {
						return
					}
					// The wait ended before the turn came.
					sendNow()
					return
				}
				turn = release
			}
		case <-t.C:
			s.park(-1)
			fresh, whole = time.Now(), true
		}
		t.Stop()
		if stream && !s.stillEnrolled(r.Context(), n) {
			// Removed or re-enrolled while its stream was open: no more
			// of its desired state to it.
			return
		}
		// Taken before the next read, so a wake-up during it is seen.
		wt = s.waiterFor(n.ID)
	}
}

// stillEnrolled is whether n still holds the certificate it authenticated
// with (from the node cache: a stream checks before each answer).
func (s *Service) stillEnrolled(ctx context.Context, n Node) bool {
	_, err := s.authNode(ctx, n.ID, n.CertSerial, true)
	if err != nil && !errors.Is(err, errNotEnrolled) && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("node authentication", "node", n.ID, "err", err)
	}
	return err == nil
}

// heldOf is what a node holds of d's member lists once it applied d:
// group -> version, for the lists that have one.
func heldOf(d nodeapi.Desired) map[string]string {
	out := make(map[string]string, len(d.SecurityGroups))
	for _, g := range d.SecurityGroups {
		if g.MembersVersion != "" {
			out[g.ID] = g.MembersVersion
		}
	}
	return out
}

// specsOf is what a node holds of d's instance specs once it applied d:
// instance -> version.
func specsOf(d nodeapi.Desired) map[string]string {
	out := make(map[string]string, len(d.Instances))
	for _, sp := range d.Instances {
		if sp.Version != "" {
			out[sp.InstanceID] = sp.Version
		}
	}
	return out
}

// park counts requests waiting for a change (by +1 and -1).
func (s *Service) park(by int) {
	s.mu.Lock()
	s.parked += by
	s.mu.Unlock()
}

// parkedRequests is how many requests wait for a change (tests).
func (s *Service) parkedRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.parked
}

func (s *Service) desired(ctx context.Context, nodeID string, fresh time.Time, whole bool) (nodeapi.Desired, error) {
	pm, cacheable := s.cfg.Ledger.(PeerMemberLedger)
	cacheable = cacheable && !s.cfg.ReadWhole
	if cacheable && !whole {
		if c, ok := s.answers.get(nodeID, time.Now()); ok {
			d, current, err := s.fromCached(ctx, nodeID, c, pm, fresh)
			if err != nil {
				return nodeapi.Desired{}, fmt.Errorf("security group members on %s: %w", nodeID, err)
			}
			if current {
				return s.withETag(d)
			}
		}
	}
	gen, all := s.answers.version(nodeID)
	var mark int64
	if cacheable {
		var err error
		if mark, err = pm.NodeMark(ctx, nodeID, fresh); err != nil {
			return nodeapi.Desired{}, fmt.Errorf("instance changes on %s: %w", nodeID, err)
		}
	}
	specs, err := s.cfg.Ledger.DesiredOnNode(ctx, nodeID)
	if err != nil {
		return nodeapi.Desired{}, fmt.Errorf("desired on %s: %w", nodeID, err)
	}
	if specs == nil {
		specs = []nodeapi.InstanceSpec{}
	}
	d := nodeapi.Desired{Instances: specs}
	if sg, ok := s.cfg.Ledger.(SecurityGroupLedger); ok {
		if d.SecurityGroups, err = sg.SecurityGroupsOnNode(ctx, nodeID, specs, fresh); err != nil {
			return nodeapi.Desired{}, fmt.Errorf("security groups on %s: %w", nodeID, err)
		}
	}
	// Each spec is named by its version, so a node that holds it is not
	// sent it again (keptSpecs).
	for i := range d.Instances {
		d.Instances[i].Version = nodeapi.SpecVersion(d.Instances[i])
	}
	if cacheable {
		c := cachedAnswer{mark: mark, at: time.Now(), specs: d.Instances, groups: slices.Clone(d.SecurityGroups)}
		for i := range c.groups {
			if g := &c.groups[i]; g.MembersVersion != "" {
				c.peers = append(c.peers, g.ID)
				g.Members = nil
			}
		}
		s.answers.put(nodeID, gen, all, c)
	}
	return s.withETag(d)
}

// fromCached is the node's cached answer with its peers' member lists
// read anew; current is false when the node's own instances changed
// since (the answer must be read whole).
func (s *Service) fromCached(ctx context.Context, nodeID string, c cachedAnswer, pm PeerMemberLedger, fresh time.Time) (d nodeapi.Desired, current bool, err error) {
	d = nodeapi.Desired{Instances: c.specs, SecurityGroups: slices.Clone(c.groups)}
	lists, err := pm.PeerMembers(ctx, c.peers, fresh)
	if err != nil {
		return nodeapi.Desired{}, false, err
	}
	// After PeerMembers, so the mark is at least as new as the lists: a
	// list never shows a launch onto the node that the mark missed.
	if mark, err := pm.NodeMark(ctx, nodeID, fresh); err != nil || mark != c.mark {
		return nodeapi.Desired{}, false, err
	}
	byID := make(map[string]nodeapi.SecurityGroup, len(lists))
	for _, l := range lists {
		byID[l.ID] = l
	}
	for i := range d.SecurityGroups {
		g := &d.SecurityGroups[i]
		if l, ok := byID[g.ID]; ok {
			g.Members, g.MembersVersion = l.Members, l.MembersVersion
		}
	}
	return d, true, nil
}

// withETag sets d's ETag.
func (s *Service) withETag(d nodeapi.Desired) (nodeapi.Desired, error) {
	// The ETag covers everything the node is told, specs and member lists
	// by their versions (when a list has one): it names the state, whether
	// a part is then sent whole, as a delta or kept (answerFor,
	// keptSpecs), and a list's version is recorded as the base of later
	// deltas.
	named := etagState{Specs: make([]string, len(d.Instances)), SecurityGroups: d.SecurityGroups}
	for i, sp := range d.Instances {
		named.Specs[i] = sp.InstanceID + ":" + sp.Version
	}
	if len(d.SecurityGroups) > 0 {
		named.SecurityGroups = slices.Clone(d.SecurityGroups)
		for i := range named.SecurityGroups {
			g := &named.SecurityGroups[i]
			if g.MembersVersion != "" {
				s.members.record(g.ID, g.MembersVersion, g.Members)
				g.Members = nil
			}
		}
	}
	b, err := json.Marshal(named)
	if err != nil {
		return nodeapi.Desired{}, err
	}
	sum := sha256.Sum256(b)
	d.ETag = hex.EncodeToString(sum[:12])
	return d, nil
}

// etagState is what a desired state's ETag is a hash of.
type etagState struct {
	Specs          []string                `json:"specs"` // INSTANCE:VERSION
	SecurityGroups []nodeapi.SecurityGroup `json:"securityGroups,omitempty"`
}

// keptSpecs is d as a node holding the specs held (instance -> version)
// is sent it: each spec the node holds at its current version is named in
// Kept instead of sent. d itself is not modified.
func keptSpecs(d nodeapi.Desired, held map[string]string) nodeapi.Desired {
	if len(held) == 0 {
		return d
	}
	send := make([]nodeapi.InstanceSpec, 0, len(d.Instances))
	for _, sp := range d.Instances {
		if v, ok := held[sp.InstanceID]; ok && v == sp.Version {
			d.Kept = append(d.Kept, sp.InstanceID)
			continue
		}
		send = append(send, sp)
	}
	d.Instances = send
	return d
}

func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// encodeJSON is v as writeJSON sends it; a value that cannot be encoded
// (none of the node API's) is a JSON null.
func encodeJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte("null\n")
	}
	return append(b, '\n')
}

// writeJSONBytes sends a body encodeJSON made.
func writeJSONBytes(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// internalError is all a caller learns of a server fault; the log has the
// cause.
const internalError = "internal error on the controller (its log has the cause); retry later"

func writeErr(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(nodeapi.Error{Error: msg})
}

// remoteIP is the request's source address without the port.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap().String()
	}
	return host
}
