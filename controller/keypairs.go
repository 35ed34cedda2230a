package controller

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"ironbark/controller/ec2"
	"ironbark/internal/store"
)

// newKey is a generated or imported key pair before it is stored.
type newKey struct {
	keyType     string // rsa | ed25519
	fingerprint string
	publicKey   string // OpenSSH authorized_keys line
	material    string // the private key, for CreateKeyPair only
}

// generateKey makes a key pair as CreateKeyPair does: RSA 2048 in PKCS#1
// PEM with the SHA-1 of its PKCS#8 DER as fingerprint, or ed25519 in
// OpenSSH's format with the unpadded base64 SHA-256 of its SSH public key.
func generateKey(keyType, name string) (newKey, error) {
	switch keyType {
	case "", "rsa":
		priv, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return newKey{}, err
		}
		p8, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return newKey{}, err
		}
		sum := sha1.Sum(p8)
		return newKey{
			keyType:     "rsa",
			fingerprint: colonHex(sum[:]),
			publicKey:   authorizedKey("ssh-rsa", sshRSAPublic(&priv.PublicKey), name),
			material:    strings.TrimSuffix(string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(priv)})), "\n"),
		}, nil
	case "ed25519":
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return newKey{}, err
		}
		blob := sshEd25519Public(pub)
		return newKey{
			keyType:     "ed25519",
			fingerprint: sha256Fingerprint(blob),
			publicKey:   authorizedKey("ssh-ed25519", blob, name),
			material:    strings.TrimSuffix(openSSHPrivateKey(pub, priv), "\n"),
		}, nil
	}
	return newKey{}, ec2.Errorf("InvalidParameterValue", "Value (%s) for parameter keyType is invalid. Valid values: rsa, ed25519", keyType)
}

// importKey parses public key material as ImportKeyPair accepts it: an
// OpenSSH authorized_keys line, an RFC 4716 block or a PEM/DER public key.
// RSA keys get the MD5 of their DER SubjectPublicKeyInfo as fingerprint
// (what AWS shows), ed25519 keys the SHA-256 of the SSH public key.
func importKey(material []byte, name string) (newKey, error) {
	bad := ec2.Errorf("InvalidKey.Format", "Key is not in valid OpenSSH public key format")
	blob, err := sshBlob(material)
	if err != nil {
		return newKey{}, bad
	}
	kind, pub, err := parseSSHPublic(blob)
	if err != nil {
		return newKey{}, bad
	}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		if p.N.BitLen() < 1024 || p.N.BitLen() > 16384 {
			return newKey{}, ec2.Errorf("InvalidKey.Format", "RSA keys must be between 1024 and 16384 bits")
		}
		der, err := x509.MarshalPKIXPublicKey(p)
		if err != nil {
			return newKey{}, bad
		}
		sum := md5.Sum(der)
		return newKey{keyType: "rsa", fingerprint: colonHex(sum[:]), publicKey: authorizedKey(kind, blob, name)}, nil
	case ed25519.PublicKey:
		return newKey{keyType: "ed25519", fingerprint: sha256Fingerprint(blob), publicKey: authorizedKey(kind, blob, name)}, nil
	}
	return newKey{}, bad
}

// sshBlob finds the SSH wire-format public key in the material.
func sshBlob(material []byte) ([]byte, error) {
	text := strings.TrimSpace(string(material))
	if blk, _ := pem.Decode([]byte(text)); blk != nil {
		return derToSSH(blk.Bytes)
	}
	if strings.HasPrefix(text, "---- BEGIN SSH2 PUBLIC KEY ----") {
		var b64 strings.Builder
		cont := false
		for _, line := range strings.Split(text, "\n")[1:] {
			line = strings.TrimSpace(line)
			switch {
			case strings.HasPrefix(line, "----"):
			case cont || strings.Contains(line, ":"):
				cont = strings.HasSuffix(line, "\\")
			default:
				b64.WriteString(line)
			}
		}
		return base64.StdEncoding.DecodeString(b64.String())
	}
	fields := strings.Fields(text)
	for i := 0; i+1 < len(fields); i++ {
		if strings.HasPrefix(fields[i], "ssh-") {
			return base64.StdEncoding.DecodeString(fields[i+1])
		}
	}
	if der, err := base64.StdEncoding.DecodeString(text); err == nil {
		return derToSSH(der)
	}
	return nil, errors.New("unrecognised key format")
}

func derToSSH(der []byte) ([]byte, error) {
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, err
	}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		return sshRSAPublic(p), nil
	case ed25519.PublicKey:
		return sshEd25519Public(p), nil
	}
	return nil, errors.New("unsupported key type")
}

// parseSSHPublic reads an ssh-rsa or ssh-ed25519 wire-format public key.
func parseSSHPublic(b []byte) (string, any, error) {
	kind, b, err := sshString(b)
	if err != nil {
		return "", nil, err
	}
	switch string(kind) {
	case "ssh-rsa":
		e, rest, err := sshString(b)
		if err != nil {
			return "", nil, err
		}
		n, rest, err := sshString(rest)
		if err != nil || len(rest) != 0 {
			return "", nil, errors.New("bad rsa key")
		}
		eb := new(big.Int).SetBytes(e)
		if !eb.IsInt64() || eb.Int64() < 3 || eb.Int64() > 1<<31 {
			return "", nil, errors.New("bad rsa exponent")
		}
		return "ssh-rsa", &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(eb.Int64())}, nil
	case "ssh-ed25519":
		k, rest, err := sshString(b)
		if err != nil || len(rest) != 0 || len(k) != ed25519.PublicKeySize {
			return "", nil, errors.New("bad ed25519 key")
		}
		return "ssh-ed25519", ed25519.PublicKey(k), nil
	}
	return "", nil, fmt.Errorf("unsupported key type %q", kind)
}

func sshString(b []byte) ([]byte, []byte, error) {
	if len(b) < 4 {
		return nil, nil, errors.New("short ssh string")
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return nil, nil, errors.New("short ssh string")
	}
	return b[4 : 4+n], b[4+n:], nil
}

func putString(buf *bytes.Buffer, s []byte) {
	_ = binary.Write(buf, binary.BigEndian, uint32(len(s)))
	buf.Write(s)
}

// putMPInt writes a positive SSH mpint (a leading zero when the top bit is set).
func putMPInt(buf *bytes.Buffer, n *big.Int) {
	b := n.Bytes()
	if len(b) > 0 && b[0]&0x80 != 0 {
		b = append([]byte{0}, b...)
	}
	putString(buf, b)
}

func sshRSAPublic(p *rsa.PublicKey) []byte {
	var buf bytes.Buffer
	putString(&buf, []byte("ssh-rsa"))
	putMPInt(&buf, big.NewInt(int64(p.E)))
	putMPInt(&buf, p.N)
	return buf.Bytes()
}

func sshEd25519Public(p ed25519.PublicKey) []byte {
	var buf bytes.Buffer
	putString(&buf, []byte("ssh-ed25519"))
	putString(&buf, p)
	return buf.Bytes()
}

// openSSHPrivateKey writes an unencrypted "openssh-key-v1" private key.
func openSSHPrivateKey(pub ed25519.PublicKey, priv ed25519.PrivateKey) string {
	var check [4]byte
	_, _ = rand.Read(check[:])
	var sec bytes.Buffer
	sec.Write(check[:])
	sec.Write(check[:])
	putString(&sec, []byte("ssh-ed25519"))
	putString(&sec, pub)
	putString(&sec, priv)
	putString(&sec, nil) // comment
	for i := byte(1); sec.Len()%8 != 0; i++ {
		sec.WriteByte(i)
	}
	var buf bytes.Buffer
	buf.WriteString("openssh-key-v1\x00")
	putString(&buf, []byte("none"))
	putString(&buf, []byte("none"))
	putString(&buf, nil)
	_ = binary.Write(&buf, binary.BigEndian, uint32(1))
	putString(&buf, sshEd25519Public(pub))
	putString(&buf, sec.Bytes())
	return string(pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: buf.Bytes()}))
}

func authorizedKey(kind string, blob []byte, name string) string {
	return kind + " " + base64.StdEncoding.EncodeToString(blob) + " " + name
}

func sha256Fingerprint(blob []byte) string {
	sum := sha256.Sum256(blob)
	return base64.RawStdEncoding.EncodeToString(sum[:])
}

func colonHex(b []byte) string {
	h := hex.EncodeToString(b)
	var s strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			s.WriteByte(':')
		}
		s.WriteString(h[i : i+2])
	}
	return s.String()
}

// CreateKeyPairResponse is CreateKeyPair's answer.
type CreateKeyPairResponse struct {
	ec2.ResponseMeta
	KeyPairID      string `xml:"keyPairId"`
	KeyName        string `xml:"keyName"`
	KeyFingerprint string `xml:"keyFingerprint"`
	KeyMaterial    string `xml:"keyMaterial"`
}

// ImportKeyPairResponse is ImportKeyPair's answer.
type ImportKeyPairResponse struct {
	ec2.ResponseMeta
	KeyPairID      string `xml:"keyPairId"`
	KeyName        string `xml:"keyName"`
	KeyFingerprint string `xml:"keyFingerprint"`
}

func validKeyName(name string) error {
	if name == "" {
		return ec2.Errorf("MissingParameter", "The request must contain the parameter KeyName")
	}
	if len(name) > 255 {
		return ec2.Errorf("InvalidParameterValue", "Value for parameter KeyName is too long (max 255 characters)")
	}
	for _, r := range name {
		if r < 0x20 || r > 0x7e {
			return ec2.Errorf("InvalidParameterValue", "Value for parameter KeyName contains invalid characters")
		}
	}
	return nil
}

func (c *Cloud) storeKey(ctx context.Context, k *call, name string, key newKey) (string, error) {
	specs, err := k.tagSpecs("key-pair")
	if err != nil {
		return "", err
	}
	id := newID("key", 17)
	err = c.db.InTx(ctx, func(tx *store.Tx) error {
		if err := checkQuota(ctx, tx, k.account(), QuotaKeyPairs, 1); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO key_pairs (account_id, name, id, key_type, fingerprint, public_key, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, k.account(), name, id, key.keyType, key.fingerprint, key.publicKey, k.now.Unix()); err != nil {
			return err
		}
		return insertTags(ctx, tx, id, "key-pair", k.account(), specs["key-pair"])
	})
	if store.IsUniqueViolation(err) {
		return "", ec2.Errorf("InvalidKeyPair.Duplicate", "The keypair '%s' already exists.", name)
	}
	if err != nil {
		return "", fmt.Errorf("store key pair: %w", err)
	}
	return id, nil
}

// createKeyPairParams are the parameters CreateKeyPair accepts.
var createKeyPairParams = []string{
	"KeyName", "KeyType", "KeyFormat", "TagSpecification.N.ResourceType", "TagSpecification.N.Tag.N.Key",
	"TagSpecification.N.Tag.N.Value",
}

func (c *Cloud) createKeyPair(ctx context.Context, k *call) (any, error) {
	name := k.str("KeyName")
	if err := validKeyName(name); err != nil {
		return nil, err
	}
	if f := k.str("KeyFormat"); f != "" && f != "pem" {
		return nil, ec2.Errorf("InvalidParameterValue", "Value (%s) for parameter keyFormat is invalid. Only pem is supported.", f)
	}
	key, err := generateKey(k.str("KeyType"), name)
	if err != nil {
		return nil, err
	}
	id, err := c.storeKey(ctx, k, name, key)
	if err != nil {
		return nil, err
	}
	return &CreateKeyPairResponse{KeyPairID: id, KeyName: name, KeyFingerprint: key.fingerprint, KeyMaterial: key.material}, nil
}

// importKeyPairParams are the parameters ImportKeyPair accepts.
var importKeyPairParams = []string{
	"KeyName", "PublicKeyMaterial", "TagSpecification.N.ResourceType", "TagSpecification.N.Tag.N.Key",
	"TagSpecification.N.Tag.N.Value",
}

func (c *Cloud) importKeyPair(ctx context.Context, k *call) (any, error) {
	name := k.str("KeyName")
	if err := validKeyName(name); err != nil {
		return nil, err
	}
	enc, err := k.required("PublicKeyMaterial")
	if err != nil {
		return nil, err
	}
	// The SDKs send the material base64-encoded (a blob); older clients
	// sent the text itself.
	material, derr := base64.StdEncoding.DecodeString(enc)
	if derr != nil {
		material = []byte(enc)
	}
	key, err := importKey(material, name)
	if err != nil {
		return nil, err
	}
	id, err := c.storeKey(ctx, k, name, key)
	if err != nil {
		return nil, err
	}
	return &ImportKeyPairResponse{KeyPairID: id, KeyName: name, KeyFingerprint: key.fingerprint}, nil
}

// deleteKeyPairParams are the parameters DeleteKeyPair accepts.
var deleteKeyPairParams = []string{
	"KeyName", "KeyPairId",
}

func (c *Cloud) deleteKeyPair(ctx context.Context, k *call) (any, error) {
	name, id := k.str("KeyName"), k.str("KeyPairId")
	if name == "" && id == "" {
		return nil, ec2.Errorf("MissingParameter", "The request must contain the parameter KeyName or KeyPairId")
	}
	// Deleting a key that does not exist succeeds, as on EC2.
	err := c.db.InTx(ctx, func(tx *store.Tx) error {
		q, args := `SELECT id FROM key_pairs WHERE account_id = ? AND name = ?`, []any{k.account(), name}
		if id != "" {
			q, args = `SELECT id FROM key_pairs WHERE account_id = ? AND id = ?`, []any{k.account(), id}
			if k.admin() {
				q, args = `SELECT id FROM key_pairs WHERE id = ?`, []any{id}
			}
		}
		var kid string
		if err := tx.QueryRow(ctx, q, args...).Scan(&kid); errors.Is(err, sql.ErrNoRows) {
			return nil
		} else if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM tags WHERE resource_id = ?`, kid); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM key_pairs WHERE id = ?`, kid)
		return err
	})
	if err != nil {
		return nil, err
	}
	return ok()
}

// KeyPairInfo is one item of DescribeKeyPairs.
type KeyPairInfo struct {
	KeyPairID      string `xml:"keyPairId"`
	KeyName        string `xml:"keyName"`
	KeyFingerprint string `xml:"keyFingerprint"`
	KeyType        string `xml:"keyType"`
	CreateTime     string `xml:"createTime"`
	PublicKey      string `xml:"publicKey,omitempty"`
	Tags           []Tag  `xml:"tagSet>item"`
	owner          string
}

// DescribeKeyPairsResponse is DescribeKeyPairs' answer.
type DescribeKeyPairsResponse struct {
	ec2.ResponseMeta
	KeyPairs []KeyPairInfo `xml:"keySet>item"`
}

// describeKeyPairsParams are the parameters DescribeKeyPairs accepts.
var describeKeyPairsParams = []string{
	"KeyName.N", "KeyPairId.N", "IncludePublicKey", "Filter.N.Name", "Filter.N.Value.N",
}

func (c *Cloud) describeKeyPairs(ctx context.Context, k *call) (any, error) {
	withPublic, err := k.boolean("IncludePublicKey")
	if err != nil {
		return nil, err
	}
	notFound := func(id string) error {
		return ec2.Errorf("InvalidKeyPair.NotFound", "The key pair '%s' does not exist", id)
	}
	d := &describer[KeyPairInfo]{
		ids: []idParam[KeyPairInfo]{
			{name: "KeyName", of: func(kp KeyPairInfo) string { return kp.KeyName }, notFound: notFound},
			{name: "KeyPairId", of: func(kp KeyPairInfo) string { return kp.KeyPairID }, notFound: notFound},
		},
		filters: []string{"key-name", "fingerprint", "key-pair-id", "key-type"},
		field: func(kp KeyPairInfo, n string) []string {
			switch n {
			case "key-name":
				return []string{kp.KeyName}
			case "fingerprint":
				return []string{kp.KeyFingerprint}
			case "key-pair-id":
				return []string{kp.KeyPairID}
			}
			return []string{kp.KeyType}
		},
		tags: func(kp KeyPairInfo) []Tag { return kp.Tags },
		key:  func(kp KeyPairInfo) string { return kp.KeyName },
		load: func(ctx context.Context, k *call, _ map[string][]string) ([]KeyPairInfo, error) {
			return c.loadKeyPairs(ctx, k, withPublic)
		},
	}
	out, _, err := d.run(ctx, k)
	if err != nil {
		return nil, err
	}
	return &DescribeKeyPairsResponse{KeyPairs: out}, nil
}

// loadKeyPairs loads the caller's key pairs. The admin lists only its own
// key pairs here: key names are per account, and a key pair is useful only
// to the account holding it.
func (c *Cloud) loadKeyPairs(ctx context.Context, k *call, withPublic bool) ([]KeyPairInfo, error) {
	tags, err := loadTags(ctx, c.db, k, "key-pair")
	if err != nil {
		return nil, err
	}
	rows, err := c.db.Query(ctx, `SELECT id, name, key_type, fingerprint, public_key, created_at, account_id
		FROM key_pairs WHERE account_id = ?`, k.account())
	if err != nil {
		return nil, fmt.Errorf("describe key pairs: %w", err)
	}
	defer rows.Close()
	var out []KeyPairInfo
	for rows.Next() {
		var kp KeyPairInfo
		var created int64
		if err := rows.Scan(&kp.KeyPairID, &kp.KeyName, &kp.KeyType, &kp.KeyFingerprint, &kp.PublicKey, &created, &kp.owner); err != nil {
			return nil, err
		}
		kp.CreateTime = ec2.Time{Time: time.Unix(created, 0)}.String()
		kp.Tags = tagSet(tags[kp.KeyPairID])
		if !withPublic {
			kp.PublicKey = ""
		}
		out = append(out, kp)
	}
	return out, rows.Err()
}
