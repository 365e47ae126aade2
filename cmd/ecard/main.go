// Command ecard is the citizen's e-card app as a command-line program: it
// keeps a device key under --home, applies for the e-card, changes the PIN,
// scans and confirms QR logins, shows presentation codes and reports loss.
//
// Every request is signed with the device key (see idp/wallet). The number
// to confirm is the one the browser shows: ecard never guesses it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image"
	_ "image/png" // QR screenshots
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"

	"github.com/essc-project/essc/idp/wallet"
	"github.com/essc-project/essc/idp/wallet/client"
	"github.com/essc-project/essc/qrlogin"
	"github.com/essc-project/essc/signing"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// state is what the app remembers between commands (home/state.json).
type state struct {
	Server     string `json:"server"`
	CardNumber string `json:"card_number,omitempty"`
	ECardID    string `json:"ecard_id,omitempty"`
	LastTxn    string `json:"last_txn,omitempty"`
}

type appHome struct {
	dir string
	st  state
	key *signing.Key
}

const usage = `usage: ecard [--home DIR] [--server URL] <command> [flags]

commands:
  init                                   create this device's SM2 key
  pin --card NO --old PIN --new PIN      change the card PIN (the initial 123456 must be changed first)
  apply --card NO --ssn SSN --name NAME --pin PIN
                                         apply for the e-card, binding this device
  scan PAYLOAD | --image QR.png | --code CODE
                                         scan a login QR (payload text, a screenshot, or the elderly-mode code)
  confirm --number N --pin PIN [--txn T] confirm the login with the number the browser shows
  confirm --number N --dev-face KEY.pem  confirm with DEVELOPMENT liveness evidence signed by the test key
  deny [--txn T]                         refuse the login
  code                                   show a single-use presentation code (60 s)
  certify --dev-face KEY.pem             annual eligibility check (待遇资格认证) with DEVELOPMENT liveness
  notices                                my sign-ins ("you logged in to X from Y")
  not-me SID                             "不是我": end a sign-in I do not recognise
  report-loss                            report the card lost
`

// run executes one command and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := flag.NewFlagSet("ecard", flag.ContinueOnError)
	g.SetOutput(stderr)
	g.Usage = func() { fmt.Fprint(stderr, usage) }
	home := g.String("home", envOr("ECARD_HOME", "./data/ecard"), "app state directory (env ECARD_HOME)")
	server := g.String("server", envOr("ECARD_SERVER", ""), "server base URL (env ECARD_SERVER; default http://127.0.0.1:8080)")
	if err := g.Parse(args); err != nil {
		return 2
	}
	if g.NArg() == 0 {
		g.Usage()
		return 2
	}
	cmd, rest := g.Arg(0), g.Args()[1:]
	h := &appHome{dir: *home}
	if err := h.load(cmd == "init"); err != nil {
		fmt.Fprintln(stderr, "ecard:", err)
		return 1
	}
	if *server != "" {
		h.st.Server = *server
	}
	if h.st.Server == "" {
		h.st.Server = "http://127.0.0.1:8080"
	}
	err := h.dispatch(ctx, cmd, rest, stdout, stderr)
	if err == nil {
		err = h.save()
	}
	if err != nil {
		var e *client.Error
		if errors.As(err, &e) {
			fmt.Fprintf(stderr, "ecard: %s（%s）\n", e.Message, e.Code)
		} else {
			fmt.Fprintln(stderr, "ecard:", err)
		}
		return 1
	}
	return 0
}

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

func (h *appHome) load(creating bool) error {
	b, err := os.ReadFile(filepath.Join(h.dir, "device.pem"))
	switch {
	case errors.Is(err, os.ErrNotExist) && creating:
		return nil
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("no device key in %s: run 'ecard init' first", h.dir)
	case err != nil:
		return err
	}
	if h.key, err = signing.ParsePKCS8PEM(b, nil); err != nil {
		return fmt.Errorf("device key: %w", err)
	}
	if b, err := os.ReadFile(filepath.Join(h.dir, "state.json")); err == nil {
		if err := json.Unmarshal(b, &h.st); err != nil {
			return fmt.Errorf("state.json: %w", err)
		}
	}
	return nil
}

func (h *appHome) save() error {
	if h.key == nil {
		return nil
	}
	b, _ := json.MarshalIndent(h.st, "", "  ")
	return os.WriteFile(filepath.Join(h.dir, "state.json"), b, 0o600)
}

func (h *appHome) client() *client.Client {
	return &client.Client{Base: h.st.Server, Key: h.key}
}

func (h *appHome) dispatch(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ecard "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cardNo  = fs.String("card", "", "card number")
		ssn     = fs.String("ssn", "", "social security number")
		name    = fs.String("name", "", "name on the card")
		pin     = fs.String("pin", "", "card PIN")
		oldPIN  = fs.String("old", "", "current PIN")
		newPIN  = fs.String("new", "", "new PIN")
		number  = fs.Int("number", 0, "the number the browser shows")
		txn     = fs.String("txn", "", "transaction (default: the last scanned)")
		code    = fs.String("code", "", "elderly-mode login code")
		imgPath = fs.String("image", "", "QR screenshot (PNG)")
		devFace = fs.String("dev-face", "", "DEVELOPMENT liveness test key (PKCS#8 PEM)")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	c := h.client()
	switch cmd {
	case "init":
		if h.key != nil {
			return fmt.Errorf("a device key already exists in %s", h.dir)
		}
		k, err := signing.GenerateKey(signing.AlgSM2SM3)
		if err != nil {
			return err
		}
		pem, err := signing.MarshalPKCS8PEM(k, nil)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(h.dir, 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(h.dir, "device.pem"), pem, 0o600); err != nil {
			return err
		}
		h.key = k
		fmt.Fprintf(stdout, "设备密钥已生成（SM2），指纹 %s\n", k.Thumbprint())
		return nil
	case "pin":
		if err := c.ChangePIN(ctx, *cardNo, *oldPIN, *newPIN); err != nil {
			return err
		}
		h.st.CardNumber = *cardNo
		fmt.Fprintln(stdout, "密码已修改")
		return nil
	case "apply":
		r, err := c.Apply(ctx, wallet.ApplyRequest{CardNumber: *cardNo, SSN: *ssn, Name: *name, PIN: *pin})
		if err != nil {
			return err
		}
		h.st.CardNumber, h.st.ECardID = *cardNo, r.ECardID
		fmt.Fprintf(stdout, "电子社保卡已签发：%s（%s，等级 %d）\n", r.ECardID, r.SSNMasked, r.Level)
		return nil
	case "scan":
		var sv qrlogin.ScanView
		var err error
		if *code != "" {
			sv, err = c.ScanCode(ctx, strings.ToUpper(*code))
		} else {
			payload := fs.Arg(0)
			if *imgPath != "" {
				if payload, err = decodeQR(*imgPath); err != nil {
					return err
				}
			}
			if payload == "" {
				return errors.New("scan: give the payload, --image or --code")
			}
			sv, err = c.Scan(ctx, payload)
		}
		if err != nil {
			return err
		}
		printScan(stdout, sv)
		h.st.LastTxn = sv.Txn
		return nil
	case "confirm":
		t := pick(*txn, h.st.LastTxn)
		if t == "" || *number == 0 {
			return errors.New("confirm: --number (and a scanned transaction) required")
		}
		if *devFace != "" {
			b, err := os.ReadFile(*devFace)
			if err != nil {
				return err
			}
			k, err := signing.ParsePKCS8PEM(b, nil)
			if err != nil {
				return err
			}
			ev, err := wallet.SignDevLiveness(k, h.st.ECardID, t, time.Now())
			if err != nil {
				return err
			}
			err = c.ConfirmFace(ctx, t, *number, ev)
			if err == nil {
				fmt.Fprintln(stdout, "已确认（刷脸，开发环境验证器），请回到浏览器")
			}
			return err
		}
		if err := c.Confirm(ctx, t, *number, *pin); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "已确认，请回到浏览器")
		return nil
	case "deny":
		if err := c.Deny(ctx, pick(*txn, h.st.LastTxn)); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "已拒绝本次登录")
		return nil
	case "code":
		p, err := c.PresentationCode(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "展码（%s 前有效，仅可使用一次）：%s\n", p.ExpiresAt.Local().Format("15:04:05"), p.Code)
		return nil
	case "certify":
		if *devFace == "" {
			return errors.New("certify: face liveness is needed; with the development verifier give --dev-face KEY.pem")
		}
		b, err := os.ReadFile(*devFace)
		if err != nil {
			return err
		}
		k, err := signing.ParsePKCS8PEM(b, nil)
		if err != nil {
			return err
		}
		out, err := c.Certify(ctx, func(challenge string) (string, error) {
			return wallet.SignDevLiveness(k, h.st.ECardID, challenge, time.Now())
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "待遇资格认证完成：%s\n", out)
		return nil
	case "notices":
		ns, err := c.Notices(ctx)
		if err != nil {
			return err
		}
		if len(ns) == 0 {
			fmt.Fprintln(stdout, "没有登录记录")
		}
		for _, n := range ns {
			fmt.Fprintf(stdout, "%s  您登录了 %s（%s），来自 %s  [%s]\n", n.At.Local().Format("2006-01-02 15:04"), n.RPName, n.RPDomain, n.Browser, n.SID)
		}
		return nil
	case "not-me":
		sid := fs.Arg(0)
		if sid == "" {
			return errors.New("not-me: give the sign-in id shown by 'ecard notices'")
		}
		if err := c.NotMe(ctx, sid); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "已结束该登录：相关令牌已吊销，网站已收到退出通知。")
		return nil
	case "report-loss":
		if err := c.ReportLoss(ctx); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "已挂失。电子社保卡已暂停使用；解挂请到服务网点办理。")
		return nil
	}
	return fmt.Errorf("unknown command %q (see ecard --help)", cmd)
}

func pick(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func printScan(w io.Writer, v qrlogin.ScanView) {
	fmt.Fprintf(w, "登录请求\n  网站：%s（%s）\n  用途：%s\n", v.RPName, v.RPDomain, v.PurposeText)
	if len(v.RequestedData) > 0 {
		fmt.Fprintf(w, "  将提供：%s\n", strings.Join(v.RequestedData, "、"))
	}
	fmt.Fprintf(w, "  浏览器：%s %s，%s\n", v.BrowserRegion, v.BrowserIP, v.BrowserDevice)
	fmt.Fprintf(w, "  请选择浏览器上显示的数字：%v\n", v.Candidates)
	if v.RequiredACR == qrlogin.ACRFace {
		fmt.Fprintln(w, "  该业务需要刷脸认证")
	}
}

// decodeQR reads a QR code from a PNG screenshot.
func decodeQR(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		return "", fmt.Errorf("QR image: %w", err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		return "", err
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, nil)
	if err != nil {
		return "", fmt.Errorf("no QR code found in %s: %w", path, err)
	}
	return res.GetText(), nil
}
