import Mustache
import Notifications

/// The dashboard's Mustache templates, compiled into the binary so a deployment is one
/// file. Every page inherits `layout` and fills its `content` block; `{{value}}` is
/// HTML-escaped, and only the server-drawn chart is inserted raw (`{{{svg}}}`).
/// No script, no CDN: everything works without JavaScript.
///
/// Values are escaped by `HTMLText.escape`, scalar by scalar, not by swift-mustache's
/// own HTML escaping, which compares grapheme clusters: a tenant named `\u{600}<meta …>`
/// rendered a live tag. Every template starts with the pragma choosing it (added here,
/// so no template can forget it; a partial starts in the library's default type).
enum DashboardTemplates {
    static func library() throws -> MustacheLibrary {
        MustacheContentTypes.register(ScalarHTML(), named: ScalarHTML.name)
        var library = MustacheLibrary()
        for (name, text) in all { try library.register(ScalarHTML.pragma + text, named: name) }
        return library
    }

    /// HTML escaping for the templates' `{{value}}`s.
    struct ScalarHTML: MustacheContentType {
        static let name = "TALLY_HTML"
        static let pragma = "{{% CONTENT_TYPE: \(name) }}"

        func escapeText(_ text: String) -> String { HTMLText.escape(text) }
    }

    static let all: [(String, String)] = [
        ("layout", layout), ("sign-in", signIn), ("usage", usage), ("trend", trend), ("upcoming", upcoming),
        ("invoices", invoices), ("alerts", alerts), ("webhooks", webhooks), ("tenants", tenants), ("error", error),
    ]

    static let layout = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>{{title}} · Tally</title>
        <style>
        *{box-sizing:border-box}
        body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;background:#f5f6f8}
        header{background:#1d2430;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center}
        header a{color:#fff;text-decoration:none}
        header .brand{font-weight:700;margin-right:auto}
        nav{display:flex;flex-wrap:wrap;gap:.25rem .9rem}
        nav a[aria-current=page]{text-decoration:underline}
        header form{margin:0}
        main{max-width:72rem;margin:0 auto;padding:1rem}
        h1{font-size:1.4rem;margin:.2rem 0 .8rem}
        .muted{color:#5b6575}
        .cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(15rem,1fr));gap:1rem}
        .card{background:#fff;border:1px solid #dde1e7;border-radius:.5rem;padding:1rem;min-width:0}
        .card h2{font-size:1rem;margin:0 0 .4rem;overflow-wrap:anywhere}
        .value{font-size:1.25rem;font-weight:600;overflow-wrap:anywhere}
        .bar{height:.6rem;background:#e6e9ee;border-radius:.3rem;overflow:hidden;margin:.5rem 0}
        .bar span{display:block;height:100%}
        .level-low{background:#2e9b4f}.level-elevated{background:#e0a800}.level-high{background:#d23c3c}
        .tag{display:inline-block;font-size:.75rem;border:1px solid #c5cbd5;border-radius:.25rem;padding:0 .3rem;margin-right:.3rem}
        .scroll{overflow-x:auto;max-width:100%}
        table{border-collapse:collapse;background:#fff;width:100%}
        th,td{border-bottom:1px solid #e6e9ee;padding:.4rem .6rem;text-align:left;white-space:nowrap}
        td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
        form.inline{display:inline}
        fieldset{border:1px solid #dde1e7;background:#fff;border-radius:.5rem;margin:1rem 0;padding:1rem;min-width:0}
        label{display:block;margin:.4rem 0}
        input,select{font:inherit;padding:.3rem;max-width:100%}
        button{font:inherit;padding:.3rem .8rem;cursor:pointer}
        .error{background:#fdecec;border:1px solid #d23c3c;padding:.6rem 1rem;border-radius:.4rem}
        .notice{background:#eaf4ff;border:1px solid #7aa7d8;padding:.6rem 1rem;border-radius:.4rem;overflow-wrap:anywhere}
        svg{width:100%;height:auto;background:#fff;border:1px solid #dde1e7;border-radius:.5rem}
        .ranges a{margin-right:.8rem}
        .ranges a[aria-current]{font-weight:700;color:#1d2430;text-decoration:none}
        .sr-only{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
        </style>
        </head>
        <body>
        <header>
        <a class="brand" href="/dashboard">Tally</a>
        {{#nav}}
        <nav aria-label="Dashboard">
        {{#links}}<a href="{{href}}"{{#current}} aria-current="page"{{/current}}>{{label}}</a>{{/links}}
        </nav>
        <form method="post" action="/dashboard/sign-out"><input type="hidden" name="csrf_token" value="{{csrf}}"><button type="submit">Sign out</button></form>
        {{/nav}}
        </header>
        <main>
        {{#tenantName}}<p class="muted">{{tenantName}}</p>{{/tenantName}}
        {{$content}}{{/content}}
        </main>
        </body>
        </html>
        """

    static let signIn = """
        {{<layout}}{{$content}}
        <h1>Sign in</h1>
        {{#error}}<p class="error" role="alert">{{error}}</p>{{/error}}
        <form method="post" action="/dashboard/sign-in">
        <input type="hidden" name="csrf_token" value="{{csrf}}">
        <fieldset>
        <label for="api_key">Your Tally API key (or the operator's admin token)</label>
        <input id="api_key" name="api_key" type="password" autocomplete="off" required size="48">
        <p><button type="submit">Sign in</button></p>
        </fieldset>
        </form>
        {{/content}}{{/layout}}
        """

    static let usage = """
        {{<layout}}{{$content}}
        <h1>Usage</h1>
        <p>{{periodLabel}} <span class="muted">({{periodKind}})</span>{{#plan}} · plan <strong>{{plan}}</strong>{{/plan}}</p>
        {{#empty}}<p class="notice">{{empty}}</p>{{/empty}}
        <div class="cards">
        {{#cards}}
        <section class="card" data-metric="{{metric}}">
        <h2>{{metric}}</h2>
        <div class="value"><span data-field="value">{{value}}</span>{{#quota}} of <span data-field="quota">{{quota}}</span>{{/quota}}{{#unlimited}} · <span data-field="quota">Unlimited</span>{{/unlimited}}</div>
        {{#level}}<div class="bar" role="img" aria-label="{{percent}} % of the quota"><span class="level-{{level}}" data-level="{{level}}" style="width:{{barWidth}}%"></span></div>
        <div data-field="percent">{{percent}} % of quota</div>{{/level}}
        <div class="muted">{{#enforcement}}<span class="tag" data-field="enforcement">{{enforcement}} limit</span>{{/enforcement}}{{#change}}<span data-field="change">{{change}}</span>{{/change}}</div>
        {{#charge}}<div>Overage so far: <strong>{{charge}}</strong></div>{{/charge}}
        </section>
        {{/cards}}
        </div>
        {{/content}}{{/layout}}
        """

    static let trend = """
        {{<layout}}{{$content}}
        <h1>Trend</h1>
        <p class="ranges">{{#ranges}}<a href="{{href}}"{{#current}} aria-current="true"{{/current}}>{{label}}</a>{{/ranges}}</p>
        {{#empty}}<p class="notice">{{empty}}</p>{{/empty}}
        {{{svg}}}
        <div class="scroll">
        <table>
        <caption class="sr-only">Usage per {{granularity}} for {{rangeLabel}}</caption>
        <thead><tr><th scope="col">{{granularity}} (UTC)</th>{{#metrics}}<th scope="col" class="num">{{.}}</th>{{/metrics}}</tr></thead>
        <tbody>
        {{#rows}}<tr><th scope="row">{{label}}</th>{{#values}}<td class="num">{{.}}</td>{{/values}}</tr>{{/rows}}
        </tbody>
        </table>
        </div>
        {{/content}}{{/layout}}
        """

    static let upcoming = """
        {{<layout}}{{$content}}
        <h1>Upcoming charges</h1>
        {{#empty}}<p class="notice">{{empty}}</p>{{/empty}}
        {{#invoice}}
        <p>{{periodLabel}} · plan <strong>{{plan}}</strong> · usage counted up to {{asOf}}</p>
        <div class="scroll">
        <table>
        <thead><tr><th scope="col">Line</th><th scope="col" class="num">Quantity</th><th scope="col" class="num">Unit price</th><th scope="col" class="num">Amount</th></tr></thead>
        <tbody>
        {{#lines}}<tr><td>{{description}}</td><td class="num">{{quantity}}</td><td class="num">{{unitPrice}}</td><td class="num">{{amount}}</td></tr>{{/lines}}
        </tbody>
        <tfoot>
        <tr><th scope="row" colspan="3">Subtotal</th><td class="num">{{subtotal}}</td></tr>
        <tr><th scope="row" colspan="3">Tax ({{taxRate}})</th><td class="num">{{tax}}</td></tr>
        <tr><th scope="row" colspan="3">Total so far</th><td class="num" data-field="total"><strong>{{total}}</strong></td></tr>
        </tfoot>
        </table>
        </div>
        {{/invoice}}
        {{/content}}{{/layout}}
        """

    static let invoices = """
        {{<layout}}{{$content}}
        <h1>Invoices</h1>
        {{#empty}}<p class="notice">{{empty}}</p>{{/empty}}
        {{#hasInvoices}}
        <div class="scroll">
        <table>
        <thead><tr><th scope="col">Number</th><th scope="col">Period</th><th scope="col">Status</th><th scope="col" class="num">Total</th><th scope="col">PDF</th></tr></thead>
        <tbody>
        {{#invoices}}<tr><td>{{number}}</td><td>{{period}}</td><td>{{status}}{{#stripe}} · Stripe: {{stripe}}{{/stripe}}</td><td class="num">{{total}}</td><td><a href="{{pdf}}">{{number}}.pdf</a></td></tr>{{/invoices}}
        </tbody>
        </table>
        </div>
        {{/hasInvoices}}
        {{/content}}{{/layout}}
        """

    static let alerts = """
        {{<layout}}{{$content}}
        <h1>Alerts</h1>
        {{#error}}<p class="error" role="alert">{{error}}</p>{{/error}}
        {{#empty}}<p class="notice">{{empty}}</p>{{/empty}}
        {{#hasAlerts}}
        <div class="scroll">
        <table>
        <thead><tr><th scope="col">Metric</th><th scope="col">Fires when</th><th scope="col">Channels</th><th scope="col"></th></tr></thead>
        <tbody>
        {{#alerts}}<tr data-alert="{{id}}"><td>{{metric}}</td><td>{{rule}}</td><td>{{channels}}</td><td>
        <form class="inline" method="post" action="{{deleteAction}}"><input type="hidden" name="csrf_token" value="{{csrf}}"><button type="submit">Remove</button></form></td></tr>{{/alerts}}
        </tbody>
        </table>
        </div>
        {{/hasAlerts}}
        <form method="post" action="{{addAction}}">
        <input type="hidden" name="csrf_token" value="{{csrf}}">
        <input type="hidden" name="form_key" value="{{formKey}}">
        <fieldset>
        <legend>Add an alert</legend>
        <label>Metric <input name="metric" required value="api_calls"></label>
        <label>Kind <select name="kind"><option value="threshold">value reaches a threshold</option><option value="quota">percent of quota reached</option><option value="anomaly">anomaly (hour far above baseline)</option></select></label>
        <label>Threshold value (for threshold) <input name="threshold_value" inputmode="decimal"></label>
        <label>Percent of quota (for quota) <input name="threshold_percentage" inputmode="decimal"></label>
        <label>Channel <select name="channel"><option value="email">email</option><option value="webhook">webhook</option></select></label>
        <p><button type="submit">Add alert</button></p>
        </fieldset>
        </form>
        {{/content}}{{/layout}}
        """

    static let webhooks = """
        {{<layout}}{{$content}}
        <h1>Webhook endpoints</h1>
        {{#error}}<p class="error" role="alert">{{error}}</p>{{/error}}
        {{#secret}}<p class="notice" role="status">Signing secret of the new endpoint, shown this once: <code>{{secret}}</code></p>{{/secret}}
        {{#empty}}<p class="notice">{{empty}}</p>{{/empty}}
        {{#hasEndpoints}}
        <div class="scroll">
        <table>
        <thead><tr><th scope="col">URL</th><th scope="col">Events</th><th scope="col">Active</th><th scope="col"></th></tr></thead>
        <tbody>
        {{#endpoints}}<tr><td>{{url}}</td><td>{{events}}</td><td>{{active}}</td><td>
        <form class="inline" method="post" action="{{deleteAction}}"><input type="hidden" name="csrf_token" value="{{csrf}}"><button type="submit">Remove</button></form></td></tr>{{/endpoints}}
        </tbody>
        </table>
        </div>
        {{/hasEndpoints}}
        <form method="post" action="{{addAction}}">
        <input type="hidden" name="csrf_token" value="{{csrf}}">
        <input type="hidden" name="form_key" value="{{formKey}}">
        <fieldset>
        <legend>Add an endpoint</legend>
        <label>URL <input name="url" type="url" required size="40" placeholder="https://example.com/tally"></label>
        <label>Description <input name="description"></label>
        <p><button type="submit">Add endpoint</button></p>
        </fieldset>
        </form>
        {{/content}}{{/layout}}
        """

    static let tenants = """
        {{<layout}}{{$content}}
        <h1>Tenants</h1>
        <p class="muted">Charges so far in each tenant's open billing period, tax included ({{count}} tenants with a subscription open now{{#truncated}}, the {{shown}} newest listed{{/truncated}}).</p>
        <form method="get" action="/dashboard/usage">
        <label>Open a tenant by id <input name="tenant" required size="36" pattern="[0-9a-fA-F-]{36}"></label>
        <button type="submit">Open</button>
        </form>
        {{#empty}}<p class="notice">{{empty}}</p>{{/empty}}
        <div class="scroll">
        <table>
        <thead><tr><th scope="col"><a href="{{sortByName}}">Tenant</a></th><th scope="col">Plan</th><th scope="col">Period</th><th scope="col" class="num"><a href="{{sortByCharge}}">Charge so far</a></th></tr></thead>
        <tbody>
        {{#rows}}<tr><td><a href="{{href}}">{{name}}</a></td><td>{{plan}}</td><td>{{period}}</td><td class="num">{{charge}}</td></tr>{{/rows}}
        </tbody>
        </table>
        </div>
        <p>{{#previous}}<a href="{{previous}}" rel="prev">Previous</a> {{/previous}}{{pageLabel}}{{#next}} <a href="{{next}}" rel="next">Next</a>{{/next}}</p>
        {{/content}}{{/layout}}
        """

    static let error = """
        {{<layout}}{{$content}}
        <h1>{{heading}}</h1>
        <p class="error" role="alert">{{message}}</p>
        <p><a href="/dashboard">Back to the dashboard</a></p>
        {{/content}}{{/layout}}
        """
}
