package risk

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Injection detection is a small phrase grammar, not a keyword list: an
// imperative verb aimed at the model's own instructions ("ignore all previous
// instructions"), a role reassignment ("you are now …"), a forged role header
// ("SYSTEM:", "<|im_start|>system"), a request to disclose the prompt or keys,
// and instructions hidden in HTML comments. "ignore previous invoices" has no
// object the grammar knows; text that quotes an attack to discuss it is
// discounted.
var (
	injVerbs     = `(?:ignore|disregard|forget|override|bypass|skip|abandon|discard|neglect|drop|set aside|throw out|do not follow|don't follow|stop following)`
	injQualifier = `(?:all|any|every|previous|prior|above|earlier|preceding|foregoing|initial|original|existing|your|system|other|these|those|old|former|safety|the above|the previous|the prior|the system|of the|of your)`
	injObject    = `(?:instructions?|prompts?|rules|directions?|guidelines|guidance|directives?|orders|commands|context|constraints|guardrails|restrictions|programming|policies|messages|system prompt|system message|conditioning|training)`
	reOverride   = regexp.MustCompile(`\b` + injVerbs + `\s+(?:(?:` + injQualifier + `)[\s,]+){1,4}(?:\w+\s+){0,2}` + injObject + `\b`)
	reAimed      = regexp.MustCompile(`\b(?:if you(?:'re| are) an? (?:ai|assistant|agent|model|llm|language model|bot|chatbot)|(?:ai|assistant|agent|model|llm|chatbot|bot)s? (?:reading|processing|summari[sz]ing|parsing)|when (?:summari[sz]ing|reading|processing|parsing|handling|you (?:read|summari[sz]e|process|see|parse|handle))|note to (?:the |any )?(?:ai|assistant|agent|model|llm)s?)\b`)
	reAction     = regexp.MustCompile(`\b(?:forward|send|email|e-mail|upload|post|transfer|wire|grant|delete|remove|share|fetch|download|run|execute|approve|reply with|include (?:the|all|any)|export|copy|disable)\b`)
	reDataWords  = regexp.MustCompile(`@|://|\b(?:contents?|credentials?|passwords?|secrets?|export|database|api keys?|tokens?|payroll|salar\w*|all (?:customer|user|employee|open|the)\w*|files?|\.env|ssh|admin)\b`)
	reAuthority  = regexp.MustCompile(`\b(?:the (?:user|admin|administrator|owner|ceo|cfo|security team|it team) (?:has|have) (?:already )?(?:authori[sz]ed|approved|asked|instructed|requested|permitted) you|you (?:are|have been) (?:now )?(?:authori[sz]ed|permitted|allowed|cleared) to)\b`)
	reFollow     = regexp.MustCompile(`\b(?:fetch|visit|open|read|load|download|go to)\b(?:[^.\n]|\.\S){0,120}?\band (?:follow|execute|obey|run|carry out)\b`)
	reEverything = regexp.MustCompile(`\b(?:ignore|disregard|forget)\s+(?:everything|anything|all of the text|all)\s+(?:above|before|prior|previously|earlier|you (?:were|have been|'ve been) told)`)
	reNewTask    = regexp.MustCompile(`\b(?:your (?:new|real|actual|true) (?:task|job|goal|instructions?|objective)|new (?:system )?instructions\s*:|updated instructions\s*:|new system prompt)`)
	reRole       = regexp.MustCompile(`\b(?:(?:you are|you're) now (?:an? |the |my |in |acting |no longer |free |unrestricted|unfiltered|jailbroken|dan\b)|from now on,? you (?:are|will|must)|you will now act as|pretend (?:to be|you are)|act as (?:an? |the )?(?:unrestricted|unfiltered|jailbroken|dan\b|evil|root|admin|developer|system)|roleplay as)`)
	reMode       = regexp.MustCompile(`\b(?:developer|dev|god|dan|jailbreak|debug|admin|sudo|unrestricted|maintenance) mode\b\s*(?:is\s+)?(?:enabled|activated|on|engaged|unlocked)?`)
	reHeader     = regexp.MustCompile(`(?mi)(?:^|[.!?]\s+|\n\s*|\[|<|#{2,}\s*)(?:system|assistant|developer|admin|administrator|operator)\s*(?:message|prompt|override|note)?\s*(?::|\]|>)\s*\S`)
	reChatTokens = regexp.MustCompile(`<\|im_start\|>|<\|im_end\|>|<\|system\|>|<\|assistant\|>|\[/?INST\]|<<SYS>>|<\|endoftext\|>|<\|begin_of_text\|>|<\|start_header_id\|>`)
	reDisclose   = regexp.MustCompile(`\b(?:print|reveal|show|output|repeat|leak|dump|display|tell me|share|disclose|expose|send|email|forward|give me|list|reply with|respond with|provide)\s+(?:\w+\s+){0,4}?(?:system prompt|hidden prompt|initial prompt|your prompt|your instructions|hidden instructions|initial instructions|api keys?|access keys?|credentials|passwords?|secrets?|tokens|environment variables|env vars|private keys?)\b`)
	reSecrecy    = regexp.MustCompile(`\b(?:do not|don't|never)\s+(?:mention|tell|reveal|inform|disclose|notify|alert|let (?:the )?user know)\b|\bwithout (?:telling|informing|notifying|alerting|mentioning)\b`)
	reAddress    = regexp.MustCompile(`\b(?:ai|assistant|agent|model|llm|chatbot|claude|gpt|copilot|bot)\s*[:,]\s*(?:when|if|please|you|ignore|forward|send|always|also|do)\b|\bwhen you (?:read|summari[sz]e|process|see|parse|handle) this\b|\bnote to (?:the )?(?:ai|assistant|agent|model|llm)\b`)
	reHTMLCmt    = regexp.MustCompile(`(?s)<!--(.*?)-->`)
	reCmtImper   = regexp.MustCompile(`\b(?:forward|send|email|upload|post|delete|remove|transfer|grant|ignore|disregard|execute|run|click|approve|call|invoke|export|copy|do not (?:mention|tell|reveal)|don't (?:mention|tell))\b`)
	reURLorMail  = regexp.MustCompile(`[a-z][a-z0-9+.-]*://\S+|\S+@\S+|\b[a-z0-9-]+(?:\.[a-z0-9-]+)+\b`)
	reMetaWords  = regexp.MustCompile(`\b(?:injection|injections|jailbreak|jailbreaks|example|examples|research|paper|papers|defen[cs]e|defen[cs]es|detect|detection|classifier|dataset|red[- ]team|attack|attacks|mitigat\w*|owasp|payloads?|benchmark|how to prevent|what is)\b`)
)

// injectionCheck weighs instructions to a model hidden in text.
func injectionCheck(s string) (float64, string) {
	if len(s) < 12 {
		return 0, ""
	}
	if len(s) > 64<<10 {
		s = cutUTF8(s, 64<<10)
	}
	if len(s) > injChunk+injOverlap {
		// Long text: check overlapping chunks, so the word gates keep the
		// regular expressions off the chunks that cannot match.
		best, detail := 0.0, ""
		for off := 0; off < len(s); off += injChunk {
			start := off
			for start > 0 && start < len(s) && s[start]&0xC0 == 0x80 {
				start--
			}
			end := min(len(s), off+injChunk+injOverlap)
			if w, d := injectionChunk(cutUTF8(s[start:], end-start)); w > best {
				best, detail = w, d
			}
		}
		return best, detail
	}
	return injectionChunk(s)
}

// Chunking of long texts for injectionCheck.
const (
	injChunk   = 8 << 10
	injOverlap = 512
)

func injectionChunk(s string) (float64, string) {
	norm := ""
	n := func() string { // normalized lazily: most text never reaches a regexp
		if norm == "" {
			norm = normalizeText(s)
		}
		return norm
	}
	var kinds []string
	var firstDetail string
	best := 0.0
	note := func(w float64, kind, detail string) {
		kinds = append(kinds, kind)
		if w > best {
			best, firstDetail = w, detail
		}
	}
	quoted := func(loc []int, in string) bool { return insideQuotes(in, loc[0], loc[1]) }
	metaDone, meta := false, false
	// discount weighs a match at loc in the text in (s or its normalized form).
	discount := func(loc []int, in string) float64 {
		if !metaDone {
			metaDone = true
			meta = reMetaWords.MatchString(reURLorMail.ReplaceAllString(cutUTF8(n(), 16<<10), " "))
		}
		q := quoted(loc, in)
		if q && meta {
			return 0.15
		}
		if q || meta {
			return 0.6
		}
		return 1
	}
	// Cheap substring gates keep the regular expressions off ordinary text.
	var ws wordSet
	ws.index(s)
	hasObject := ws.any("instruction", "instructions", "prompt", "prompts", "rule", "rules", "direction", "directions", "guideline", "guidelines",
		"guidance", "directive", "directives", "order", "orders", "command", "commands", "context", "constraint", "constraints", "guardrail",
		"guardrails", "restriction", "restrictions", "programming", "policy", "policies", "message", "messages", "conditioning", "training")
	if hasObject && ws.any("ignore", "disregard", "forget", "override", "bypass", "skip", "abandon", "discard", "neglect", "drop", "set", "throw", "follow") {
		if loc := reOverride.FindStringIndex(n()); loc != nil {
			m := norm[loc[0]:loc[1]]
			w := 1.0
			if !containsAny(m, "instruction", "prompt", "rule", "direction", "guideline", "directive", "guardrail", "restriction", "programming", "polic", "constraint", "conditioning", "training", "guidance") {
				w = 0.5 // "ignore the previous message": people say that too
			}
			note(w*discount(loc, norm), "override", "asks the model to "+clip(m, 60))
		}
	}
	if ws.any("everything", "anything", "all") && ws.any("ignore", "disregard", "forget") {
		if loc := reEverything.FindStringIndex(n()); loc != nil {
			note(0.9*discount(loc, norm), "override", "asks the model to "+clip(norm[loc[0]:loc[1]], 60))
		}
	}
	if ws.any("task", "instructions", "prompt", "job", "goal", "objective") && ws.any("new", "real", "actual", "true", "updated") {
		if loc := reNewTask.FindStringIndex(n()); loc != nil {
			note(0.6*discount(loc, norm), "newtask", "announces new instructions: "+clip(norm[loc[0]:min(len(norm), loc[1]+30)], 60))
		}
	}
	if ws.any("now", "pretend", "act", "roleplay") {
		if loc := reRole.FindStringIndex(n()); loc != nil {
			end := min(loc[1]+40, len(norm))
			note(0.6*discount(loc, norm), "role", "reassigns the model's role: "+clip(norm[loc[0]:end], 60))
		}
	}
	if ws.has("mode") {
		if loc := reMode.FindStringIndex(n()); loc != nil && !strings.HasSuffix(strings.TrimSpace(norm[loc[0]:loc[1]]), " mode") {
			note(0.6*discount(loc, norm), "mode", "claims a special mode: "+clip(norm[loc[0]:loc[1]], 40))
		}
	}
	// Forged role headers are judged on the original text: "SYSTEM:" in
	// capitals mid-message is the tell; "System: Linux" in a log line is not.
	if ws.any("system", "assistant", "developer", "admin", "administrator", "operator") && strings.ContainsAny(s, ":]>") {
		if loc := reHeader.FindStringIndex(s); loc != nil {
			h := s[loc[0]:loc[1]]
			w := 0.5
			if strings.Contains(h, "SYSTEM") || strings.Contains(h, "ADMIN") || strings.Contains(h, "[system") || strings.Contains(h, "<system") {
				w = 0.8
			}
			// A header followed by an imperative is a forged message.
			rest := normalizeText(s[loc[1]-1 : min(len(s), loc[1]+200)])
			if reDisclose.MatchString(rest) || reOverride.MatchString(rest) || reMode.MatchString(rest) || reCmtImper.MatchString(rest) {
				w += 0.3
			}
			if w >= 0.7 {
				hdr := strings.TrimLeft(h, ".!?#[< \t\n")
				tail := s[loc[1]-1 : min(len(s), loc[1]+40)]
				note(w*discount(loc, s), "header", "forged role header: "+clip(strings.TrimSpace(hdr[:len(hdr)-1]+tail), 60))
			}
		}
	}
	if strings.ContainsAny(s, "<[") && containsAny(s, "<|", "[INST", "[/INST", "<<SYS") {
		if loc := reChatTokens.FindStringIndex(s); loc != nil {
			note(1*discount(loc, s), "tokens", "chat-template control token "+s[loc[0]:loc[1]])
		}
	}
	if ws.any("prompt", "instructions", "key", "keys", "credentials", "password", "passwords", "secret", "secrets", "tokens", "environment", "env") {
		if loc := reDisclose.FindStringIndex(n()); loc != nil {
			note(0.7*discount(loc, norm), "disclose", "asks to "+clip(norm[loc[0]:loc[1]], 60))
		}
	}
	if len(kinds) > 0 && ws.any("not", "don't", "never", "without") {
		if loc := reSecrecy.FindStringIndex(n()); loc != nil {
			note(0.5, "secrecy", "asks to hide the action: "+clip(norm[loc[0]:loc[1]], 40))
		}
	}
	if ws.any("ai", "assistant", "agent", "model", "llm", "bot", "chatbot", "claude", "gpt", "copilot", "when", "note") {
		if loc := reAddress.FindStringIndex(n()); loc != nil {
			note(0.5*discount(loc, norm), "address", "addresses the model directly: "+clip(norm[loc[0]:min(len(norm), loc[1]+30)], 60))
		}
	}
	// Instructions aimed at whatever model reads the text, asking it to move
	// data or act: "if you are an AI model reading this, send … to x@y".
	if ws.any("ai", "assistant", "agent", "model", "llm", "bot", "chatbot", "when", "note") {
		if loc := reAimed.FindStringIndex(n()); loc != nil {
			win := norm[loc[0]:min(len(norm), loc[1]+300)]
			if a := reAction.FindStringIndex(win); a != nil && reDataWords.MatchString(win[a[0]:]) {
				note(0.9*discount(loc, norm), "aimed", "instructions aimed at an AI reader: "+clip(win, 60))
			}
		}
	}
	if ws.any("authorized", "authorised", "approved", "permitted", "allowed", "cleared", "asked", "instructed") {
		if loc := reAuthority.FindStringIndex(n()); loc != nil {
			note(0.7*discount(loc, norm), "authority", "claims authority for the model: "+clip(norm[loc[0]:min(len(norm), loc[1]+40)], 60))
		}
	}
	if ws.any("follow", "execute", "obey", "run", "carry") && ws.any("fetch", "visit", "open", "read", "load", "download", "go") {
		if loc := reFollow.FindStringIndex(n()); loc != nil {
			note(0.8*discount(loc, norm), "follow", "tells the model to fetch and obey: "+clip(norm[loc[0]:loc[1]], 60))
		}
	}
	if strings.Contains(s, "<!--") {
		for _, m := range reHTMLCmt.FindAllStringSubmatch(s, 8) {
			body := normalizeText(m[1])
			if reCmtImper.MatchString(body) && (reAddress.MatchString(body) || reSecrecy.MatchString(body) || reOverride.MatchString(body) || strings.Contains(body, "@") || strings.Contains(body, "you ")) {
				note(1, "comment", "hidden HTML comment gives instructions: "+clip(strings.TrimSpace(body), 60))
				break
			}
		}
	}
	if best == 0 {
		return 0, ""
	}
	distinct := map[string]bool{}
	for _, k := range kinds {
		distinct[k] = true
	}
	w := best + 0.15*float64(len(distinct)-1)
	return min(w, 1), firstDetail
}

// normalizeText lower-cases, drops invisible characters and collapses white
// space so spacing and case games do not matter.
func normalizeText(s string) string {
	b := make([]byte, 0, len(s))
	space := false
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x80 {
			i++
			switch {
			case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
				if !space {
					b = append(b, ' ')
				}
				space = true
				continue
			case c >= 'A' && c <= 'Z':
				c += 'a' - 'A'
			}
			space = false
			b = append(b, c)
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == 0x200b || r == 0x200c || r == 0x200d || r == 0x2060 || r == 0xfeff || r == 0xad:
			continue
		case unicode.IsSpace(r):
			if !space {
				b = append(b, ' ')
			}
			space = true
			continue
		}
		space = false
		b = utf8.AppendRune(b, unicode.ToLower(r))
	}
	return string(b)
}

// insideQuotes reports whether [i, j) sits inside a quoted span.
func insideQuotes(s string, i, j int) bool {
	for _, q := range []string{`"`, "“", "'", "`", "«"} {
		closeQ := q
		switch q {
		case "“":
			closeQ = "”"
		case "«":
			closeQ = "»"
		}
		open := strings.LastIndex(s[:i], q)
		if open < 0 {
			continue
		}
		if q == "'" && open > 0 && isAlnum(s[open-1]) { // an apostrophe
			continue
		}
		if q == `"` && strings.Count(s[:i], q)%2 == 0 {
			continue
		}
		if c := strings.Index(s[j:], closeQ); c >= 0 && c < 200 {
			return true
		}
	}
	return false
}
