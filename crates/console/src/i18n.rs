//! The console's words in English and Simplified Chinese: one table, a
//! row per key. The language comes from the `ph_lang` cookie (set by the
//! switch in the header), else from `Accept-Language`.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    En,
    Zh,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    /// `en` or `zh` (the cookie's and the switch's values).
    pub fn from_code(s: &str) -> Option<Lang> {
        match s {
            "en" => Some(Lang::En),
            "zh" | "zh-CN" => Some(Lang::Zh),
            _ => None,
        }
    }

    /// The first language of `Accept-Language` the console has (weights
    /// honoured), English when none.
    pub fn from_accept(header: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',') {
            let mut bits = part.split(';');
            let tag = bits.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = bits
                .find_map(|b| b.trim().strip_prefix("q=").and_then(|q| q.parse().ok()))
                .unwrap_or(1.0f32);
            let lang = if tag == "zh" || tag.starts_with("zh-") {
                Some(Lang::Zh)
            } else if tag == "en" || tag.starts_with("en-") {
                Some(Lang::En)
            } else {
                None
            };
            if let Some(l) = lang {
                if best.is_none_or(|(bq, _)| q > bq) {
                    best = Some((q, l));
                }
            }
        }
        best.map_or(Lang::En, |(_, l)| l)
    }

    /// The words for `key` (the key itself when it has no row, which a
    /// test rules out).
    pub fn t(self, key: &'static str) -> &'static str {
        match WORDS.iter().find(|(k, _, _)| *k == key) {
            Some((_, en, zh)) => match self {
                Lang::En => en,
                Lang::Zh => zh,
            },
            None => key,
        }
    }
}

/// (key, English, Simplified Chinese).
pub const WORDS: &[(&str, &str, &str)] = &[
    ("title", "Posthorn console", "Posthorn 控制台"),
    ("api_key", "API key", "API 密钥"),
    ("sign_in", "Sign in", "登录"),
    ("sign_out", "Sign out", "退出"),
    (
        "sign_in_help",
        "Sign in with an admin key (posthorn apikey create --admin) or an account's key.",
        "使用管理员密钥（posthorn apikey create --admin）或账户的 API 密钥登录。",
    ),
    ("bad_key", "That API key is not valid.", "API 密钥无效。"),
    (
        "expired_form",
        "The form expired; please try again.",
        "表单已过期，请重试。",
    ),
    ("overview", "Overview", "概览"),
    ("messages", "Messages", "邮件"),
    ("domains", "Domains", "域名"),
    ("senders", "Senders", "发信地址"),
    ("suppressions", "Suppressions", "抑制列表"),
    ("signed_in_as", "Signed in as", "当前身份"),
    ("admin", "admin", "管理员"),
    ("account", "Account", "账户"),
    ("all_accounts", "All accounts", "全部账户"),
    ("search", "Search", "搜索"),
    ("message_id", "Message ID", "邮件 ID"),
    ("recipient", "Recipient", "收件人"),
    ("recipients", "Recipients", "收件人"),
    ("status", "Status", "状态"),
    ("any", "any", "全部"),
    ("label", "Label", "标签"),
    ("date", "Date (UTC)", "日期（UTC）"),
    ("received", "Received", "接收时间"),
    ("subject", "Subject", "主题"),
    ("from", "From", "发件人"),
    ("size", "Size", "大小"),
    ("no_messages", "No messages match.", "没有匹配的邮件。"),
    ("older", "Older", "更早"),
    ("newest", "Newest", "最新"),
    ("envelope", "Envelope", "信封"),
    ("mail_from", "MAIL FROM", "MAIL FROM"),
    ("login", "Login", "登录名"),
    ("client", "Client", "客户端"),
    ("attempts", "Attempts", "尝试次数"),
    ("last_reply", "Last reply", "最后回复"),
    ("next_try", "Next try", "下次尝试"),
    ("updated", "Updated", "更新时间"),
    ("timeline", "Timeline", "时间线"),
    ("accepted_event", "accepted", "已接收"),
    (
        "completed_event",
        "every recipient final",
        "所有收件人已完成",
    ),
    ("content", "Content", "内容"),
    ("headers", "Headers", "邮件头"),
    ("text_part", "Text", "纯文本"),
    ("html_part", "HTML (shown inert)", "HTML（安全预览）"),
    (
        "no_content",
        "The content was deleted after the retention time.",
        "内容已按保留期删除。",
    ),
    ("retry_now", "Retry now", "立即重试"),
    (
        "retried",
        "Deferred recipients are due again now.",
        "延迟的收件人已重新排队。",
    ),
    ("not_found", "Not found", "未找到"),
    (
        "not_found_text",
        "There is nothing here, or it is not yours to see.",
        "此处没有内容，或您无权查看。",
    ),
    ("bad_request", "That did not work", "操作未完成"),
    ("error", "Something went wrong", "出错了"),
    ("back", "Back", "返回"),
    ("domain", "Domain", "域名"),
    ("add_domain", "Add domain", "添加域名"),
    (
        "dns_records",
        "DNS records to publish",
        "需要发布的 DNS 记录",
    ),
    ("check_dns", "Check DNS now", "立即检查 DNS"),
    ("copy", "Copy", "复制"),
    ("name", "Name", "名称"),
    ("value", "Value", "值"),
    ("purpose", "Purpose", "用途"),
    ("check", "Check", "检查结果"),
    ("created", "Created", "创建时间"),
    ("no_domains", "No domains yet.", "还没有域名。"),
    ("address", "Address", "地址"),
    ("add_sender", "Add sender", "添加发信地址"),
    ("password", "SMTP password", "SMTP 密码"),
    (
        "password_help",
        "Leave empty to generate a strong one.",
        "留空则自动生成强密码。",
    ),
    ("set_password", "Set password", "设置密码"),
    ("reset_password", "Reset password", "重置密码"),
    ("new_password", "New SMTP password", "新的 SMTP 密码"),
    (
        "shown_once",
        "Shown once: copy it now, only a hash is stored.",
        "仅显示一次：请立即复制，系统只保存其哈希。",
    ),
    ("password_set", "Password set for", "已设置密码："),
    ("no_senders", "No senders yet.", "还没有发信地址。"),
    ("reason", "Reason", "原因"),
    ("add_suppression", "Add suppression", "添加抑制"),
    ("remove", "Remove", "移除"),
    ("removed", "Removed", "已移除"),
    ("added", "Added", "已添加"),
    (
        "no_suppressions",
        "No suppressed addresses.",
        "抑制列表为空。",
    ),
    ("filter", "Filter", "筛选"),
    ("language", "中文", "English"),
    ("message", "Message", "邮件"),
    ("account_required", "Choose an account.", "请选择账户。"),
    ("today", "Today", "今天"),
    ("webhooks", "Webhooks", "Webhook"),
    ("events", "Events", "事件"),
    ("add_webhook", "Add webhook", "添加 Webhook"),
    ("signing_secret", "Signing secret (HMAC-SHA256)", "签名密钥（HMAC-SHA256）"),
    (
        "webhooks_help",
        "Posthorn POSTs each event of the kinds chosen to the URL, signed with the webhook's secret, and retries until it is taken.",
        "Posthorn 会将所选类型的每个事件以 POST 发送到该 URL，并用 Webhook 密钥签名，失败时自动重试。",
    ),
    ("statistics", "Statistics", "统计"),
    ("days", "Days", "天数"),
    ("download_csv", "Download CSV", "下载 CSV"),
    ("expired", "expired", "已过期"),
    ("suppressed", "suppressed", "已抑制"),
    ("accounts", "Accounts", "账户管理"),
    ("add_account", "Add account", "添加账户"),
    ("setting_saved", "Saved", "已保存"),
    (
        "settings_help",
        "Limits and policy settings of this account; * marks its own value, an empty value takes the configured default.",
        "本账户的限额与策略设置；* 表示账户自有的值，留空则使用配置的默认值。",
    ),
    ("setting", "Setting", "设置项"),
    ("in_force", "In force", "生效值"),
    ("default", "Default", "默认值"),
    ("change", "Change", "修改"),
    ("save", "Save", "保存"),
    ("api_keys", "API keys", "API 密钥"),
    ("new_key", "New API key", "新的 API 密钥"),
    ("description", "Description", "描述"),
    ("revoke", "Revoke", "吊销"),
    ("create_key", "Create key", "创建密钥"),
    ("admin_key_option", "(admin key: every account)", "（管理员密钥：所有账户）"),
    (
        "admin_key_help",
        "An admin key sees and changes every account; an account's key only its own.",
        "管理员密钥可查看和修改所有账户；账户密钥只能访问本账户。",
    ),
    ("api_users", "API users", "API 用户"),
    ("new_user_key", "Key of", "密钥："),
    (
        "api_users_help",
        "An API user is an SMTP login (user and key) that may send as any sender address of its account.",
        "API 用户是一个 SMTP 登录（用户名和密钥），可使用本账户的任意发信地址发送。",
    ),
    ("add_api_user", "Add API user", "添加 API 用户"),
    ("key", "Key", "密钥"),
    ("labels", "Labels", "标签"),
    (
        "labels_help",
        "Labels group messages for statistics (an API user's login `user#label`, or the API's label field).",
        "标签用于按类别统计邮件（API 用户登录名 `user#label`，或 API 的 label 字段）。",
    ),
    ("add_label", "Add label", "添加标签"),
    ("accepted", "accepted", "已接收"),
    ("delivered", "delivered", "已送达"),
    ("deferred", "deferred", "延迟"),
    ("bounced", "bounced", "退信"),
    ("last_14_days", "Last 14 days", "最近 14 天"),
    ("queue", "Queue by status", "队列状态"),
    ("destinations", "Delivery destinations", "投递目标"),
    (
        "no_destinations",
        "No destination is being delivered to right now.",
        "当前没有正在投递的目标。",
    ),
    ("destination", "Destination", "目标"),
    ("queued", "Queued", "排队"),
    ("in_flight", "In flight", "发送中"),
    ("connections", "Connections", "连接"),
    ("suspended_until", "Suspended until", "暂停至"),
    ("last_error", "Last error", "最后错误"),
    ("bounce", "Bounce", "退回"),
    (
        "bounce_confirm",
        "Bounce every recipient not yet final (cannot be undone)",
        "退回所有尚未完成的收件人（无法撤销）",
    ),
    (
        "bounce_unconfirmed",
        "Tick the box to confirm the bounce.",
        "请勾选复选框以确认退回。",
    ),
    ("bounced_by_operator", "Bounced by the operator", "已由管理员退回"),
    (
        "nothing_to_bounce",
        "No recipient was left to bounce: every one is final.",
        "没有可退回的收件人：全部已完成。",
    ),
    ("bounce_notice_queued", "Bounce notice queued", "退信通知已排队"),
    ("send_test_event", "Send test event", "发送测试事件"),
    (
        "test_event_queued",
        "Test event queued for webhook",
        "测试事件已排队，Webhook",
    ),
    ("recent_deliveries", "Recent deliveries", "最近投递"),
    (
        "no_deliveries",
        "Nothing sent to this webhook yet.",
        "尚未向此 Webhook 发送任何事件。",
    ),
    ("time", "Time", "时间"),
    ("event", "Event", "事件"),
    ("http_status", "HTTP status", "HTTP 状态"),
    ("error_col", "Error", "错误"),
    ("state", "State", "状态"),
    ("done_ok", "done", "已完成"),
    ("gave_up", "gave up", "已放弃"),
    ("pending_at", "next try", "下次重试"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_unique_and_has_both_languages() {
        for (i, (k, en, zh)) in WORDS.iter().enumerate() {
            assert!(!en.is_empty() && !zh.is_empty(), "{k}");
            assert!(
                WORDS[i + 1..].iter().all(|(other, _, _)| other != k),
                "{k} twice"
            );
        }
        assert_eq!(Lang::En.t("sign_in"), "Sign in");
        assert_eq!(Lang::Zh.t("sign_in"), "登录");
    }

    #[test]
    fn accept_language_picks_the_preferred_known_language() {
        assert_eq!(Lang::from_accept("zh-CN,zh;q=0.9,en;q=0.8"), Lang::Zh);
        assert_eq!(Lang::from_accept("en-US,en;q=0.9,zh;q=0.5"), Lang::En);
        assert_eq!(Lang::from_accept("fr-FR, zh;q=0.3"), Lang::Zh);
        assert_eq!(Lang::from_accept("fr"), Lang::En);
        assert_eq!(Lang::from_accept(""), Lang::En);
        assert_eq!(Lang::from_accept("en;q=0.2, zh-TW;q=0.8"), Lang::Zh);
    }
}
