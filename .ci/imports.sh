#!/usr/bin/env bash
# Enforces the dependency rules of docs/ARCHITECTURE.md on non-test code with `go list -deps`.
set -euo pipefail
cd "$(dirname "$0")/.."
mod=$(go list -m)
fail=0
deps() { go list -deps -f '{{.ImportPath}}' "$1" 2>/dev/null | grep -v "^$1\$" || true; }
forbid() { # package pattern, forbidden regexp, reason
  local pkg=$1 re=$2 why=$3 bad
  for p in $(go list "$pkg" 2>/dev/null); do
    bad=$(deps "$p" | grep -E "$re" || true)
    if [ -n "$bad" ]; then
      echo "import rule: $p must not import: $(echo $bad | tr '\n' ' ') ($why)"; fail=1
    fi
  done
}
only() { # package, allowed regexp (stdlib is always allowed), reason
  local p=$1 re=$2 why=$3 bad
  bad=$(go list -deps -f '{{if not .Standard}}{{.ImportPath}}{{end}}' "$p" | grep -v "^$p\$" | grep -vE "$re" || true)
  if [ -n "$bad" ]; then echo "import rule: $p may import only stdlib and $re, found: $(echo $bad | tr '\n' ' ') ($why)"; fail=1; fi
}
only  "$mod/signing" '^(github.com/emmansun/gmsm|github.com/golang-jwt/jwt/v5|golang.org/x/)' "signing is crypto only"
forbid "$mod/storage/..." "^$mod/(idp|qrlogin|cmd)(/|\$)" "storage is below the domain"
forbid "$mod/storage" "^$mod/storage/" "the contract package never imports a backend"
forbid "$mod/qrlogin/..." "^$mod/(idp|cmd)(/|\$)|^$mod/storage/(memory|redis|sql)" "qrlogin declares its interfaces"
forbid "$mod/idp/..." "^$mod/cmd(/|\$)|^$mod/storage/(memory|redis|sql)" "only cmd wires concrete backends"
forbid "$mod/signing/..." "^$mod/" "signing imports nothing of ours"
# children of idp never import the parent
for p in $(go list "$mod/idp/..." | grep -v "^$mod/idp\$"); do
  if go list -f '{{join .Imports "\n"}}' "$p" | grep -qx "$mod/idp"; then echo "import rule: $p imports its parent $mod/idp"; fail=1; fi
done
[ $fail = 0 ] && echo "import rules: ok"
exit $fail
