package risk

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

var (
	reEmail    = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`)
	reCardLike = regexp.MustCompile(`\b[2-6]\d{3}(?:[ -]?\d){9,15}\b`)
	reSSN      = regexp.MustCompile(`\b(?:00[1-9]|0[1-9]\d|[1-578]\d\d|6[0-57-9]\d|66[0-57-9])-(?:0[1-9]|[1-9]\d)-(?:000[1-9]|00[1-9]\d|0[1-9]\d\d|[1-9]\d{3})\b`)
	reRows     = regexp.MustCompile(`(?i)\b(\d[\d,]*)\s+(?:more\s+)?(?:rows|records|customers|users|entries|accounts|contacts)\b`)
	reIBAN     = regexp.MustCompile(`(?i)\b[A-Z]{2}\d{2}(?:\s?[A-Z0-9]{4}){2,7}(?:\s?[A-Z0-9]{1,4})?\b`)
	reWallet   = regexp.MustCompile(`\b(?:bc1[a-z0-9]{20,90}|0x[0-9a-fA-F]{40}|[13][a-km-zA-HJ-NP-Z1-9]{25,34}|T[1-9A-HJ-NP-Za-km-z]{33}|4[0-9AB][1-9A-HJ-NP-Za-km-z]{93})\b`)
	piiNames   = setOf("email", "e-mail", "email_address", "phone", "phone_number", "mobile", "name", "full_name", "first_name",
		"last_name", "address", "street", "dob", "date_of_birth", "birthdate", "ssn", "card", "card_number", "card_last4", "iban",
		"salary", "passport", "national_id", "tax_id", "zip", "postcode")
)

// luhnCards counts card-number-shaped digit runs that pass the Luhn check;
// strong when one is written in groups or next to a card word (a bare
// 16-digit number passes by chance one time in ten).
func luhnCards(s string) (int, bool) {
	n := 0
	strong := false
	low := ""
	for _, loc := range reCardLike.FindAllStringIndex(s, 50) {
		m := s[loc[0]:loc[1]]
		digits := make([]int, 0, 19)
		for _, c := range m {
			if c >= '0' && c <= '9' {
				digits = append(digits, int(c-'0'))
			}
		}
		if len(digits) < 13 || len(digits) > 19 {
			continue
		}
		sum := 0
		for i := len(digits) - 1; i >= 0; i-- {
			d := digits[i]
			if (len(digits)-1-i)%2 == 1 {
				d *= 2
				if d > 9 {
					d -= 9
				}
			}
			sum += d
		}
		if sum%10 == 0 {
			n++
			if strings.ContainsAny(m, " -") {
				strong = true
			} else {
				if low == "" {
					low = strings.ToLower(s)
				}
				ctx := low[max(0, loc[0]-60):min(len(low), loc[1]+60)]
				if containsAny(ctx, "card", "visa", "mastercard", "amex", "cvv", "cvc", "exp", "pan", "credit") {
					strong = true
				}
			}
		}
	}
	return n, strong
}

// piiHeader finds a delimited header line naming two or more personal columns.
func piiHeader(s string) string {
	for i, line := range strings.SplitN(s, "\n", 6) {
		if i >= 5 {
			break
		}
		sep := ""
		for _, c := range []string{",", "\t", ";", "|"} {
			if strings.Count(line, c) >= 2 {
				sep = c
				break
			}
		}
		if sep == "" {
			continue
		}
		var cols []string
		for _, f := range strings.Split(line, sep) {
			f = strings.ToLower(strings.Trim(strings.TrimSpace(f), "\"'"))
			if piiNames[f] {
				cols = append(cols, f)
			}
		}
		if len(cols) >= 2 {
			// A header alone is a template; a header with rows is data.
			rest := strings.SplitN(s, "\n", i+3)
			if len(rest) > i+1 && strings.Count(rest[i+1], sep) >= 1 {
				return strings.Join(cols, ", ")
			}
		}
	}
	return ""
}

// toolSpecific runs the detectors that depend on what the tool does.
func (a *analysis) toolSpecific() {
	switch {
	case containsAny(a.tool, "transfer", "payment", "pay_", "payout", "wire", "remit", "send_money", "send_funds", "disburse") || a.tool == "pay":
		a.financial()
	case containsAny(a.tool, "payee", "vendor", "supplier", "beneficiar", "bank_account", "recipient", "counterpart") &&
		containsAny(a.tool, "create", "add", "update", "register", "set", "change", "edit", "new"):
		// Creating a payee, or changing where a known vendor's money goes.
		for _, l := range a.leaves {
			switch l.key {
			case "name", "payee", "vendor", "vendor_id", "supplier", "id", "iban", "account", "account_number", "beneficiary", "payee_id":
				if !l.isNum && len(l.s) >= 3 {
					a.payees = append(a.payees, l.s)
				}
			}
		}
		if len(a.payees) > 0 {
			a.classes["payee_created"] = a.tool + " " + clip(a.payees[0], 40)
		}
	}
	if containsAny(a.tool, "permission", "role", "grant", "privilege", "access", "member", "acl", "iam", "invite", "sudo") {
		a.privilege()
	}
	if containsAny(a.tool, "delete", "remove", "purge", "destroy", "drop", "wipe", "erase", "truncate") {
		a.bulkDelete()
	}
}

var thresholds = []float64{1000, 3000, 5000, 10000, 15000, 25000, 50000, 100000, 250000, 1000000}

func (a *analysis) financial() {
	var amount float64
	hasAmount := false
	payee := ""
	for _, l := range a.leaves {
		switch l.key {
		case "amount", "value", "sum", "total", "amount_usd", "amount_cents":
			if l.isNum {
				amount, hasAmount = l.num, true
			} else if v, err := strconv.ParseFloat(strings.ReplaceAll(strings.TrimSpace(l.s), ",", ""), 64); err == nil {
				amount, hasAmount = v, true
			}
			if l.key == "amount_cents" {
				amount /= 100
			}
		case "to", "payee", "beneficiary", "recipient", "destination", "to_account", "account_to", "iban", "wallet", "dest_account", "creditor", "to_wallet":
			if !l.isNum && payee == "" {
				payee = strings.TrimSpace(l.s)
			}
		}
	}
	a.payTo = payee
	a.classes["payment"] = "payment to " + clip(payee, 40)
	if payee != "" {
		a.values = append(a.values, novel{"payee", strings.ToLower(payee)})
	}
	var w float64
	var why []string
	lp := strings.ToLower(payee)
	own := a.org.ownAccount(payee)
	record := false
	for _, p := range []string{"vendor:", "vendor-", "payee:", "supplier:", "employee:", "customer:", "contractor:", "payroll:"} {
		if strings.HasPrefix(lp, p) {
			record = true
		}
	}
	switch {
	case payee == "":
	case containsAny(lp, "btc:", "bitcoin:", "eth:", "ethereum:", "xmr:", "monero:", "ltc:", "usdt:", "crypto:", "wallet:", "trx:", "sol:", "doge:") || reWallet.MatchString(payee):
		w += 1
		why = append(why, "to crypto wallet "+clip(payee, 40))
	case own:
	case record:
	case reIBAN.MatchString(payee) || containsAny(lp, "iban", "swift", "routing", "account number", "acct no", "sort code"):
		w += 0.5
		why = append(why, "to raw bank account "+clip(payee, 40)+" with no vendor record")
	default:
		w += 0.5
		why = append(why, "to external account "+clip(payee, 40))
	}
	for _, l := range a.leaves {
		if l.key == "currency" && !l.isNum {
			switch strings.ToUpper(strings.TrimSpace(l.s)) {
			case "BTC", "ETH", "USDT", "USDC", "XMR", "LTC", "DOGE", "SOL", "TRX", "BNB", "XRP", "DAI":
				if w < 1 {
					w = 1
					why = append(why, "in cryptocurrency "+strings.ToUpper(l.s))
				}
			}
		}
	}
	external := payee != "" && !own && !record
	if external && (containsWord(lp, "new") || containsWord(lp, "temp") || containsWord(lp, "tmp") || containsWord(lp, "unverified") || containsWord(lp, "test")) {
		w += 0.2
		why = append(why, "the account is marked new/temporary")
	}
	if hasAmount {
		for _, t := range thresholds {
			if amount >= 0.97*t && amount < t {
				w += 0.5
				why = append(why, fmt.Sprintf("%s is just under the %s threshold", money(amount), money(t)))
				break
			}
		}
		if external {
			switch {
			case amount >= 100000:
				w += 0.6
				why = append(why, "large amount "+money(amount))
			case amount >= 10000:
				w += 0.4
				why = append(why, "large amount "+money(amount))
			}
		}
	}
	if w > 0 {
		a.f.add(FactorFinancial, w, "transfer "+strings.Join(why, "; "))
	}
}

func money(v float64) string {
	s := strconv.FormatFloat(v, 'f', -1, 64)
	intPart, frac := s, ""
	if i := strings.IndexByte(s, '.'); i >= 0 {
		intPart, frac = s[:i], s[i:]
	}
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 && c != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String() + frac
}

var (
	topRoles   = setOf("owner", "superuser", "super_user", "super-admin", "super_admin", "superadmin", "root", "sudo", "sudoer", "god", "org_owner", "organization_owner", "global_admin", "global-admin", "domain_admin", "domain admins", "wheel", "sysadmin", "billing_owner", "docker", "administrators", "administratoraccess", "cluster-admin", "cluster_admin")
	adminRoles = setOf("admin", "administrator", "org_admin", "orgadmin", "account_admin", "security_admin", "iam_admin", "maintainer", "manager", "full_access", "all", "*", "write_all", "rw_all")
)

func (a *analysis) privilege() {
	var role, who string
	for _, l := range a.leaves {
		if l.isNum {
			continue
		}
		switch l.key {
		case "role", "roles", "permission", "permissions", "level", "access", "access_level", "group", "groups", "scope", "privilege", "privileges":
			r := strings.ToLower(strings.TrimSpace(l.s))
			if rank(r) > rank(role) {
				role = r
			}
		case "user", "username", "member", "principal", "account", "email", "target", "grantee", "assignee", "user_id", "login", "identity", "service_account":
			if who == "" {
				who = strings.TrimSpace(l.s)
			}
		}
	}
	rk := rank(role)
	if rk == 0 {
		return
	}
	for _, l := range a.leaves {
		if (l.key == "action" || l.key == "operation" || l.key == "op" || l.key == "mode") && !l.isNum {
			switch strings.ToLower(strings.TrimSpace(l.s)) {
			case "revoke", "remove", "delete", "disable", "unassign", "demote":
				return // taking a role away
			}
		}
	}
	if containsAny(a.tool, "revoke", "remove", "unassign", "demote") {
		return
	}
	lw := strings.ToLower(who)
	agent := strings.ToLower(a.call.Agent)
	var w float64
	var d string
	switch {
	case rk >= 1 && who != "" && agent != "" && (lw == agent || strings.Contains(lw, agent)):
		w, d = 1, "agent "+a.call.Agent+" grants itself "+role
	case rk >= 1 && strings.Contains(who, "@") && a.outsideMailDomain(mailDomain(who)):
		w, d = 1, role+" granted to outside account "+clip(who, 40)
	case rk == 2:
		w, d = 1, role+" granted to "+clip(who, 40)
	case rk == 1 && (strings.HasPrefix(lw, "svc") || strings.Contains(lw, "service") || strings.Contains(lw, "bot") || strings.Contains(lw, "robot")):
		w, d = 1, role+" granted to service account "+clip(who, 40)
	case rk == 1:
		w, d = 0.7, role+" granted to "+clip(who, 40)
	}
	if w > 0 {
		a.f.add(FactorPrivilege, w, d)
		a.classes["privilege_change"] = d
	}
}

// rank orders roles: 2 for owner/superuser-like, 1 for admin-like, 0 else.
func rank(r string) int {
	if r == "" {
		return 0
	}
	if topRoles[r] {
		return 2
	}
	if adminRoles[r] {
		return 1
	}
	for _, x := range []string{"owner", "superuser", "root"} {
		if containsWord(r, x) {
			return 2
		}
	}
	if strings.Contains(r, "administratoraccess") || strings.Contains(r, "cluster-admin") || strings.Contains(r, "fullaccess") {
		return 2
	}
	if containsWord(r, "admin") || strings.HasSuffix(r, "admin") || strings.HasPrefix(r, "admin") || strings.Contains(r, "administrator") {
		return 1
	}
	return 0
}

func (a *analysis) outsideMailDomain(d string) bool {
	if d == "" {
		return false
	}
	if a.org != nil {
		return !a.org.mailInside(d)
	}
	return inSet(freeMail, d)
}

// bulkDelete flags deletes whose selector matches everything.
func (a *analysis) bulkDelete() {
	table := ""
	for _, l := range a.leaves {
		if (l.key == "table" || l.key == "collection" || l.key == "resource" || l.key == "type") && !l.isNum {
			table = l.s
		}
	}
	ids := 0
	for _, l := range a.leaves {
		switch l.key {
		case "id", "ids", "record_id", "key", "where", "filter", "match", "selector", "pattern", "record_ids":
			ids++
			if l.isNum {
				continue
			}
			v := strings.ToLower(strings.TrimSpace(l.s))
			switch {
			case v == "*" || v == "%" || v == "all" || v == "any" || v == "" || v == "true" || v == ".*" || v == "*.*" || v == "1=1":
				a.f.add(FactorDestructiveSQL, 1, fmt.Sprintf("%s with wildcard %s %q on %s", a.tool, l.key, l.s, orDash(table)))
			case strings.Contains(v, "' or ") || strings.Contains(v, "or 1=1") || strings.Contains(v, "--") || strings.Contains(v, ";"):
				a.f.add(FactorDestructiveSQL, 1, fmt.Sprintf("%s with an injected selector %q on %s", a.tool, clip(l.s, 30), orDash(table)))
			case strings.Contains(v, "*") || strings.HasSuffix(v, "%"):
				a.f.add(FactorDestructiveSQL, 0.6, fmt.Sprintf("%s with pattern %s %q on %s", a.tool, l.key, l.s, orDash(table)))
			}
		}
	}
	if ids > 100 {
		a.f.add(FactorDestructiveSQL, 0.6, fmt.Sprintf("%s of %d records", a.tool, ids))
	}
	if table != "" {
		a.values = append(a.values, novel{"table", strings.ToLower(table)})
		if containsAny(strings.ToLower(table), "audit", "log") && ids == 0 {
			a.f.add(FactorDestructiveSQL, 0.6, a.tool+" on "+table+" without an id")
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
