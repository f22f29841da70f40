package upstreamtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	tokenPath    = "/token"
	tokenIssuer  = "upstreamtest"
	tokenService = "upstreamtest-registry"
	tokenKeyID   = "upstreamtest-key"
	tokenTTL     = 5 * time.Minute
)

// tokenServer issues the registry's Bearer tokens (distribution's token
// auth spec): GET with optional Basic credentials, or the OAuth2 POST form
// (grant_type password or refresh_token). Right credentials get every
// action asked for; no credentials get a token with no access, as Docker
// Hub answers anonymous requests for a private repository; wrong ones 401.
type tokenServer struct {
	key               *ecdsa.PrivateKey
	signer            jose.Signer
	user, pass, ident string
	jwksPath          string
	realm             string
	anonymousCanPull  bool
}

func newTokenServer(dir, realm string, o Options) (*tokenServer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), tokenKeyID))
	if err != nil {
		return nil, err
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &key.PublicKey, KeyID: tokenKeyID, Algorithm: string(jose.ES256), Use: "sig"}}})
	if err != nil {
		return nil, err
	}
	p := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(p, jwks, 0o600); err != nil {
		return nil, err
	}
	return &tokenServer{key: key, signer: signer, user: o.Username, pass: o.Password, ident: o.IdentityToken,
		jwksPath: p, realm: realm, anonymousCanPull: o.AnonymousPull}, nil
}

// authParams are the registry's `auth.token` settings.
func (s *tokenServer) authParams() map[string]any {
	return map[string]any{"realm": s.realm, "issuer": tokenIssuer, "service": tokenService, "jwks": s.jwksPath}
}

func (s *tokenServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var (
		scopes []string
		who    string
		authed bool
		tried  bool
	)
	switch r.Method {
	case http.MethodGet:
		scopes = r.URL.Query()["scope"]
		if u, p, ok := r.BasicAuth(); ok {
			tried, who, authed = true, u, s.check(u, p)
		}
	case http.MethodPost:
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		scopes = strings.Fields(r.PostForm.Get("scope"))
		switch r.PostForm.Get("grant_type") {
		case "password":
			u := r.PostForm.Get("username")
			tried, who, authed = true, u, s.check(u, r.PostForm.Get("password"))
		case "refresh_token":
			tried, who = true, "identity-token"
			authed = s.ident != "" && subtle.ConstantTimeCompare([]byte(r.PostForm.Get("refresh_token")), []byte(s.ident)) == 1
		default:
			http.Error(w, `{"error":"unsupported_grant_type"}`, http.StatusBadRequest)
			return
		}
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if tried && !authed {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"details":"incorrect username or password"}`)
		return
	}
	var access []*token.ResourceActions
	for _, sc := range scopes {
		typ, rest, ok1 := strings.Cut(sc, ":")
		i := strings.LastIndex(rest, ":")
		if !ok1 || i < 0 {
			continue
		}
		actions := strings.Split(rest[i+1:], ",")
		if !authed {
			if !s.anonymousCanPull {
				continue
			}
			actions = []string{"pull"}
		}
		access = append(access, &token.ResourceActions{Type: typ, Name: rest[:i], Actions: actions})
	}
	raw, err := s.sign(who, access)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"token": raw, "access_token": raw, "expires_in": int(tokenTTL / time.Second),
		"issued_at": time.Now().UTC().Format(time.RFC3339)})
}

func (s *tokenServer) check(user, pass string) bool {
	return s.user != "" &&
		subtle.ConstantTimeCompare([]byte(user), []byte(s.user)) == 1 &&
		subtle.ConstantTimeCompare([]byte(pass), []byte(s.pass)) == 1
}

// sign makes a token for subject with the given access.
func (s *tokenServer) sign(subject string, access []*token.ResourceActions) (string, error) {
	now := time.Now()
	jti := make([]byte, 8)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	claims := token.ClaimSet{
		Issuer: tokenIssuer, Subject: subject, Audience: token.AudienceList{tokenService},
		Expiration: now.Add(tokenTTL).Unix(), NotBefore: now.Add(-time.Minute).Unix(), IssuedAt: now.Unix(),
		JWTID: hex.EncodeToString(jti), Access: access,
	}
	raw, err := jwt.Signed(s.signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return raw, nil
}
