package sshagent

import (
	"encoding/binary"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// rawWorld is an agent pinning hostKey for testUser, driven over raw
// sockets by a Go client playing the part of ssh.
type rawWorld struct {
	*agentHarness
	hostKey  ssh.Signer
	devvmKey ssh.Signer
}

func startRawWorld(t testing.TB) *rawWorld {
	t.Helper()
	w := &rawWorld{hostKey: newSigner(t), devvmKey: newSigner(t)}
	w.agentHarness = startAgent(t, Config{Key: w.devvmKey, DevvmHostKeys: []ssh.PublicKey{w.hostKey.PublicKey()}, User: testUser})
	return w
}

// requireLogin proves the agent serves a fresh connection: it lists the
// devvm key, binds, and signs a login whose signature verifies.
func (w *rawWorld) requireLogin(t testing.TB) {
	t.Helper()
	c := dialRaw(t, w.sock)
	reply, err := c.roundTrip([]byte{msgRequestIdentities})
	require.NoError(t, err)
	require.Equal(t, byte(msgIdentitiesAnswer), reply[0])
	sid := sessionID(t, 32)
	reply, err = c.roundTrip(extensionReq(extSessionBind, bindBody(t, w.hostKey, sid, false)))
	require.NoError(t, err)
	require.Equal(t, []byte{msgSuccess}, reply)
	data := userauthData(sid, testUser, w.devvmKey.PublicKey(), nil)
	reply, err = c.roundTrip(signReq(w.devvmKey.PublicKey(), data))
	require.NoError(t, err)
	var resp signResponseMsg
	require.NoError(t, ssh.Unmarshal(reply, &resp))
	var sig ssh.Signature
	require.NoError(t, ssh.Unmarshal(resp.SigBlob, &sig))
	require.NoError(t, w.devvmKey.PublicKey().Verify(data, &sig))
}

// frame prefixes a request with its length.
func frame(req []byte) []byte {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(req)))
	return append(hdr[:], req...)
}

func lengthOnly(n uint32) []byte {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], n)
	return hdr[:]
}

func TestRawMalformedFramesCloseOnlyThatConnection(t *testing.T) {
	tests := []struct {
		name string
		send []byte
		// closeWrite half-closes after sending, so a truncated frame ends.
		closeWrite bool
	}{
		{name: "zero-length", send: lengthOnly(0)},
		{name: "huge-length", send: lengthOnly(0xffffffff)},
		{name: "library-limit", send: lengthOnly(16 << 20)},
		{name: "over-limit", send: lengthOnly(MaxRequestBytes + 1)},
		{name: "truncated-header", send: []byte{0, 0}, closeWrite: true},
		{name: "truncated-body", send: append(lengthOnly(100), 13, 0, 0), closeWrite: true},
	}
	w := startRawWorld(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, w.sock)
			_, err := c.Write(tc.send)
			require.NoError(t, err)
			if tc.closeWrite {
				require.NoError(t, c.Conn.(*net.UnixConn).CloseWrite())
			}
			assert.True(t, c.closedByPeer(), "the agent closes the connection")
			w.requireLogin(t)
		})
	}
}

func TestRawBadRequestsFailAndKeepServing(t *testing.T) {
	pve := newSigner(t)
	tests := []struct {
		name string
		desc string
		// reqs are sent in order on one connection; want are the replies.
		reqs func(t *testing.T, w *rawWorld) [][]byte
		want [][]byte
	}{
		{
			name: "unknown-opcode",
			reqs: func(*testing.T, *rawWorld) [][]byte { return [][]byte{{200}, {0}} },
			want: [][]byte{{msgFailure}, {msgFailure}},
		},
		{
			name: "ssh1-opcodes",
			desc: "x/crypto answers SSH1 remove-all with success; this agent refuses",
			reqs: func(*testing.T, *rawWorld) [][]byte { return [][]byte{{1}, {9}} },
			want: [][]byte{{msgFailure}, {msgFailure}},
		},
		{
			name: "identities-with-body",
			reqs: func(*testing.T, *rawWorld) [][]byte { return [][]byte{{msgRequestIdentities, 0}} },
			want: [][]byte{{msgFailure}},
		},
		{
			name: "garbage-sign",
			reqs: func(*testing.T, *rawWorld) [][]byte { return [][]byte{{msgSignRequest, 1, 2, 3}} },
			want: [][]byte{{msgFailure}},
		},
		{
			name: "garbage-extension",
			reqs: func(*testing.T, *rawWorld) [][]byte { return [][]byte{{msgExtension, 0, 0, 0, 9, 'x'}} },
			want: [][]byte{{msgFailure}},
		},
		{
			name: "unknown-extension",
			reqs: func(*testing.T, *rawWorld) [][]byte {
				return [][]byte{extensionReq("query", nil), extensionReq("restrict-destination-v00@openssh.com", []byte{1})}
			},
			want: [][]byte{{msgFailure}, {msgFailure}},
		},
		{
			name: "garbage-bind-poisons",
			reqs: func(t *testing.T, w *rawWorld) [][]byte {
				sid := sessionID(t, 32)
				return [][]byte{
					extensionReq(extSessionBind, []byte("garbage")),
					extensionReq(extSessionBind, bindBody(t, w.hostKey, sid, false)),
					signReq(w.devvmKey.PublicKey(), userauthData(sid, testUser, w.devvmKey.PublicKey(), nil)),
				}
			},
			want: [][]byte{{msgFailure}, {msgFailure}, {msgFailure}},
		},
		{
			name: "bind-trailing-bytes",
			reqs: func(t *testing.T, w *rawWorld) [][]byte {
				return [][]byte{extensionReq(extSessionBind, append(bindBody(t, w.hostKey, sessionID(t, 32), false), 0))}
			},
			want: [][]byte{{msgFailure}},
		},
		{
			name: "second-bind",
			reqs: func(t *testing.T, w *rawWorld) [][]byte {
				sid := sessionID(t, 32)
				return [][]byte{
					extensionReq(extSessionBind, bindBody(t, w.hostKey, sid, false)),
					extensionReq(extSessionBind, bindBody(t, w.hostKey, sessionID(t, 32), false)),
					signReq(w.devvmKey.PublicKey(), userauthData(sid, testUser, w.devvmKey.PublicKey(), nil)),
				}
			},
			want: [][]byte{{msgSuccess}, {msgFailure}, {msgFailure}},
		},
		{
			name: "session-id-129-bytes",
			reqs: func(t *testing.T, w *rawWorld) [][]byte {
				sid := sessionID(t, MaxSessionIDBytes+1)
				return [][]byte{
					extensionReq(extSessionBind, bindBody(t, w.hostKey, sid, false)),
					signReq(w.devvmKey.PublicKey(), userauthData(sid, testUser, w.devvmKey.PublicKey(), nil)),
				}
			},
			want: [][]byte{{msgFailure}, {msgFailure}},
		},
		{
			name: "bad-bind-signature",
			desc: "the pinned host key, signed by someone else",
			reqs: func(t *testing.T, w *rawWorld) [][]byte {
				sid := sessionID(t, 32)
				forged := bindBody(t, newSigner(t), sid, false)
				var m sessionBindMsg
				require.NoError(t, ssh.Unmarshal(forged, &m))
				m.HostKey = w.hostKey.PublicKey().Marshal()
				return [][]byte{
					extensionReq(extSessionBind, ssh.Marshal(m)),
					signReq(w.devvmKey.PublicKey(), userauthData(sid, testUser, w.devvmKey.PublicKey(), nil)),
				}
			},
			want: [][]byte{{msgFailure}, {msgFailure}},
		},
		{
			name: "sign-for-pve-key",
			reqs: func(t *testing.T, w *rawWorld) [][]byte {
				sid := sessionID(t, 32)
				return [][]byte{
					extensionReq(extSessionBind, bindBody(t, w.hostKey, sid, false)),
					signReq(pve.PublicKey(), userauthData(sid, testUser, pve.PublicKey(), nil)),
				}
			},
			want: [][]byte{{msgSuccess}, {msgFailure}},
		},
	}
	w := startRawWorld(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, w.sock)
			for i, req := range tc.reqs(t, w) {
				reply, err := c.roundTrip(req)
				require.NoError(t, err, "request %d", i)
				assert.Equal(t, tc.want[i], reply, "request %d", i)
			}
			w.requireLogin(t)
		})
	}
}

func TestGoClientWithoutBindIsRefused(t *testing.T) {
	w := startRawWorld(t)
	conn, err := net.Dial("unix", w.sock)
	require.NoError(t, err)
	defer conn.Close()
	client := agent.NewClient(conn)

	keys, err := client.List()
	require.NoError(t, err)
	require.Len(t, keys, 1)
	assert.Equal(t, w.devvmKey.PublicKey().Marshal(), keys[0].Blob)

	_, err = client.Sign(w.devvmKey.PublicKey(), userauthData(sessionID(t, 32), testUser, w.devvmKey.PublicKey(), nil))
	require.Error(t, err)
	assert.Equal(t, []string{"unbound"}, outcomes(t, w.logs, "sign"))
}

func TestSignForAnotherSessionIsRefused(t *testing.T) {
	w := startRawWorld(t)
	c := dialRaw(t, w.sock)
	reply, err := c.roundTrip(extensionReq(extSessionBind, bindBody(t, w.hostKey, sessionID(t, 32), false)))
	require.NoError(t, err)
	require.Equal(t, []byte{msgSuccess}, reply)

	other := sessionID(t, 32)
	reply, err = c.roundTrip(signReq(w.devvmKey.PublicKey(), userauthData(other, testUser, w.devvmKey.PublicKey(), nil)))
	require.NoError(t, err)
	assert.Equal(t, []byte{msgFailure}, reply)
	signs := w.logs.Where(t, "event", "sign")
	require.Len(t, signs, 1)
	assert.Equal(t, "unbound", signs[0]["outcome"])
	assert.Contains(t, signs[0]["reason"], "session id differs")
}
