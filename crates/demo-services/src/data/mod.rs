//! Deterministic demo data: every user, order, product, price, stock level,
//! review and recommendation is derived from one seed, so two runs (or two
//! replicas) with the same seed serve the same bytes, and tests can rely on
//! ids that do not change.

mod model;
mod rng;

use std::collections::{BTreeMap, HashMap};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

pub use model::*;
pub use rng::SeededRng;

/// The seed used when none is configured.
pub const DEFAULT_SEED: u64 = 20_261_128;
/// How many users the demo world has.
pub const USER_COUNT: usize = 1_000;
/// How many products the demo world has.
pub const PRODUCT_COUNT: usize = 500;
/// The password of every demo user (for the password grant).
pub const DEMO_PASSWORD: &str = "demo-password";

/// All timestamps are offsets back from this instant (2026-11-01T00:00:00Z),
/// never from "now", so that the data is reproducible.
const EPOCH: i64 = 1_793_491_200;
const DAY: i64 = 86_400;

/// The whole demo world, built once at start-up and shared read-only.
#[derive(Debug)]
pub struct DemoData {
    seed: u64,
    users: Vec<User>,
    user_index: HashMap<Uuid, usize>,
    username_index: HashMap<String, usize>,
    products: Vec<Product>,
    product_index: HashMap<Uuid, usize>,
    orders: Vec<Order>,
    order_index: HashMap<Uuid, usize>,
    orders_by_user: HashMap<Uuid, Vec<usize>>,
    reviews_by_product: HashMap<Uuid, Vec<Review>>,
    recommendations: HashMap<Uuid, Vec<Recommendation>>,
    prices: Vec<Price>,
    stock: Vec<StockLevel>,
    partners: Vec<PartnerClient>,
}

impl DemoData {
    /// Builds the demo world from `seed`. Takes a few tens of milliseconds.
    pub fn generate(seed: u64) -> Self {
        let products: Vec<Product> = (0..PRODUCT_COUNT).map(|i| gen_product(seed, i)).collect();
        let prices: Vec<Price> = products
            .iter()
            .enumerate()
            .map(|(i, p)| gen_price(seed, i, p))
            .collect();
        let stock: Vec<StockLevel> = products
            .iter()
            .enumerate()
            .map(|(i, p)| gen_stock(seed, i, p))
            .collect();
        let users: Vec<User> = (0..USER_COUNT).map(|i| gen_user(seed, i)).collect();

        let mut reviews_by_product: HashMap<Uuid, Vec<Review>> = HashMap::new();
        let mut products = products;
        for (i, product) in products.iter_mut().enumerate() {
            let reviews = gen_reviews(seed, i, product, &users);
            let count = reviews.len() as u32;
            product.rating_count = count;
            product.rating_average = if count == 0 {
                0.0
            } else {
                round2(reviews.iter().map(|r| f64::from(r.rating)).sum::<f64>() / f64::from(count))
            };
            reviews_by_product.insert(product.id, reviews);
        }

        let mut orders = Vec::new();
        let mut orders_by_user: HashMap<Uuid, Vec<usize>> = HashMap::new();
        for (ui, user) in users.iter().enumerate() {
            let mut rng = SeededRng::derive(seed, "orders-of-user", ui as u64);
            // Every tenth user has no orders at all, so that the empty case is
            // always there to test against.
            let count = if ui % 10 == 9 {
                0
            } else {
                rng.range(1, 12) as usize
            };
            let mut mine = Vec::with_capacity(count);
            for oi in 0..count {
                let order = gen_order(seed, ui, oi, user, &products, &prices);
                mine.push(orders.len());
                orders.push(order);
            }
            // Newest first, as the order service lists them.
            mine.sort_by(|a, b| orders[*b].created_at.cmp(&orders[*a].created_at));
            orders_by_user.insert(user.id, mine);
        }

        let recommendations = users
            .iter()
            .enumerate()
            .map(|(ui, u)| (u.id, gen_recommendations(seed, ui, &products, &prices)))
            .collect();

        DemoData {
            seed,
            user_index: users.iter().enumerate().map(|(i, u)| (u.id, i)).collect(),
            username_index: users
                .iter()
                .enumerate()
                .map(|(i, u)| (u.username.clone(), i))
                .collect(),
            product_index: products
                .iter()
                .enumerate()
                .map(|(i, p)| (p.id, i))
                .collect(),
            order_index: orders.iter().enumerate().map(|(i, o)| (o.id, i)).collect(),
            users,
            products,
            orders,
            orders_by_user,
            reviews_by_product,
            recommendations,
            prices,
            stock,
            partners: partners(),
        }
    }

    /// The seed this world was generated from.
    pub fn seed(&self) -> u64 {
        self.seed
    }
    /// All users, in generation order.
    pub fn users(&self) -> &[User] {
        &self.users
    }
    /// One user by id.
    pub fn user(&self, id: &Uuid) -> Option<&User> {
        self.user_index.get(id).map(|i| &self.users[*i])
    }
    /// One user by login name.
    pub fn user_by_username(&self, username: &str) -> Option<&User> {
        self.username_index.get(username).map(|i| &self.users[*i])
    }
    /// All products, in generation order.
    pub fn products(&self) -> &[Product] {
        &self.products
    }
    /// One product by id.
    pub fn product(&self, id: &Uuid) -> Option<&Product> {
        self.product_index.get(id).map(|i| &self.products[*i])
    }
    /// One order by id.
    pub fn order(&self, id: &Uuid) -> Option<&Order> {
        self.order_index.get(id).map(|i| &self.orders[*i])
    }
    /// A user's orders, newest first; `None` for an unknown user.
    pub fn orders_of(&self, user: &Uuid) -> Option<impl ExactSizeIterator<Item = &Order>> {
        self.orders_by_user
            .get(user)
            .map(|v| v.iter().map(|i| &self.orders[*i]))
    }
    /// Reviews of a product, newest first; `None` for an unknown product.
    pub fn reviews_of(&self, product: &Uuid) -> Option<&[Review]> {
        self.reviews_by_product.get(product).map(Vec::as_slice)
    }
    /// Recommendations for a user, best first; `None` for an unknown user.
    pub fn recommendations_for(&self, user: &Uuid) -> Option<&[Recommendation]> {
        self.recommendations.get(user).map(Vec::as_slice)
    }
    /// The initial price of every product (the pricing service mutates a copy).
    pub fn initial_prices(&self) -> &[Price] {
        &self.prices
    }
    /// The initial stock of every product (the inventory service mutates a copy).
    pub fn initial_stock(&self) -> &[StockLevel] {
        &self.stock
    }
    /// The partners allowed to use the client-credentials grant.
    pub fn partners(&self) -> &[PartnerClient] {
        &self.partners
    }
}

/// RFC 3339 text of a unix timestamp (always representable for our range).
pub fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn partners() -> Vec<PartnerClient> {
    let p = |id: &str, secret: &str, name: &str, scopes: &[&str], tier: &str| PartnerClient {
        client_id: id.to_owned(),
        client_secret: secret.to_owned(),
        name: name.to_owned(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        tier: tier.to_owned(),
    };
    vec![
        p(
            "partner-acme",
            "acme-secret",
            "Acme Retail",
            &["catalog:read"],
            "premium",
        ),
        p(
            "partner-umbrella",
            "umbrella-secret",
            "Umbrella Wholesale",
            &["catalog:read"],
            "premium",
        ),
        p(
            "partner-globex",
            "globex-secret",
            "Globex Marketplace",
            &["catalog:read"],
            "standard",
        ),
        p(
            "partner-initech",
            "initech-secret",
            "Initech Deals",
            &["catalog:read"],
            "free",
        ),
        p(
            "partner-hooli",
            "hooli-secret",
            "Hooli Analytics (no catalogue access)",
            &["reports:read"],
            "standard",
        ),
    ]
}

const FIRST: &[&str] = &[
    "Alice", "Bob", "Carol", "David", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory",
    "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Uma", "Victor", "Walter", "Yara",
    "Zoe", "Amara", "Kenji", "Lucía", "Mateo", "Noor", "Priya", "Sven", "Tomás",
];
const LAST: &[&str] = &[
    "Anderson", "Brown", "Chen", "Dubois", "Evans", "Fischer", "García", "Hansen", "Ito", "Jensen",
    "Kowalski", "Larsen", "Müller", "Nakamura", "Okafor", "Patel", "Quinn", "Rossi", "Silva",
    "Tanaka", "Usman", "Varga", "Williams", "Yilmaz", "Zhang",
];
const CITIES: &[(&str, &str, &str)] = &[
    ("Berlin", "BE", "DE"),
    ("Lisbon", "11", "PT"),
    ("Austin", "TX", "US"),
    ("Toronto", "ON", "CA"),
    ("Lyon", "ARA", "FR"),
    ("Osaka", "27", "JP"),
    ("Melbourne", "VIC", "AU"),
    ("Dublin", "D", "IE"),
    ("Seattle", "WA", "US"),
    ("Madrid", "MD", "ES"),
];
const STREETS: &[&str] = &[
    "Maple Avenue",
    "Harbour Street",
    "Linden Allee",
    "Rua Augusta",
    "Elm Road",
    "Station Road",
    "King Street",
    "Canal Walk",
    "Market Lane",
    "Hill Crescent",
];
const CATEGORIES: &[&str] = &[
    "electronics",
    "home",
    "kitchen",
    "outdoor",
    "fashion",
    "books",
    "toys",
    "sports",
    "beauty",
    "garden",
];
const BRANDS: &[&str] = &[
    "Northwind",
    "Contoso",
    "Fabrikam",
    "Tailspin",
    "Wingtip",
    "Proseware",
    "Litware",
    "Adatum",
    "Lucerne",
    "Fourth Coffee",
    "Woodgrove",
    "Alpine Ski House",
];
const ADJECTIVES: &[&str] = &[
    "Compact",
    "Wireless",
    "Ergonomic",
    "Classic",
    "Ultra",
    "Smart",
    "Portable",
    "Premium",
    "Eco",
    "Rugged",
    "Minimal",
    "Deluxe",
    "Pro",
    "Lightweight",
    "Modular",
];
const NOUNS: &[&str] = &[
    "Headphones",
    "Kettle",
    "Backpack",
    "Desk Lamp",
    "Running Shoes",
    "Blender",
    "Tent",
    "Novel",
    "Board Game",
    "Yoga Mat",
    "Face Cream",
    "Garden Hose",
    "Speaker",
    "Jacket",
    "Coffee Grinder",
    "Water Bottle",
    "Keyboard",
    "Cookware Set",
    "Bike Light",
    "Watch",
];
const SENTENCES: &[&str] = &[
    "Designed for everyday use and built to last.",
    "Made from responsibly sourced materials.",
    "Tested by our team over hundreds of hours.",
    "Fits neatly into small spaces and travels well.",
    "Comes with a two-year manufacturer warranty.",
    "Easy to clean, easy to store, easy to love.",
    "A favourite of customers who care about detail.",
    "Balanced, quiet and energy efficient.",
    "Pairs well with the rest of the collection.",
    "Ships in fully recyclable packaging.",
];
const REVIEW_TITLES: &[&str] = &[
    "Does what it says",
    "Better than expected",
    "Not for me",
    "Great value",
    "Solid build quality",
    "Would buy again",
    "Disappointing",
    "Exactly as described",
    "Fantastic",
    "Okay for the price",
];
const REASONS: &[&str] = &[
    "bought_together",
    "similar_to_viewed",
    "trending_in_category",
    "price_drop",
    "because_you_liked",
];
const LOYALTY_TIERS: &[&str] = &["bronze", "silver", "gold", "platinum"];
const CURRENCIES: &[&str] = &["EUR", "USD", "GBP"];

fn gen_address(rng: &mut SeededRng, recipient: &str, label: &str, default: bool) -> Address {
    let (city, region, country) = *rng.pick(CITIES);
    Address {
        id: rng.uuid(),
        label: label.to_owned(),
        recipient: recipient.to_owned(),
        line1: format!("{} {}", rng.range(1, 240), rng.pick(STREETS)),
        line2: rng
            .chance(0.3)
            .then(|| format!("Apartment {}", rng.range(1, 60))),
        city: city.to_owned(),
        region: region.to_owned(),
        postal_code: format!("{:05}", rng.range(1000, 99_999)),
        country: country.to_owned(),
        phone: format!("+1-555-{:04}", rng.range(0, 9999)),
        is_default_shipping: default,
        is_default_billing: default,
        delivery_instructions: rng
            .chance(0.4)
            .then(|| "Leave with the concierge if nobody answers.".to_owned()),
    }
}

fn gen_user(seed: u64, i: usize) -> User {
    let mut rng = SeededRng::derive(seed, "user", i as u64);
    let id = rng.uuid();
    let first = *rng.pick(FIRST);
    let last = *rng.pick(LAST);
    let username = format!("user{:04}", i + 1);
    let created = EPOCH - rng.range(200, 2000) as i64 * DAY;
    let full_name = format!("{first} {last}");
    let addresses: Vec<Address> = (0..rng.range(1, 3))
        .map(|n| {
            gen_address(
                &mut rng,
                &full_name,
                ["Home", "Work", "Parents"][n as usize],
                n == 0,
            )
        })
        .collect();
    let billing = addresses[0].id;
    let loyalty_tier = *rng.pick(LOYALTY_TIERS);
    let points = rng.range(0, 40_000);
    let tier = match rng.range(0, 9) {
        0 => "free",
        1 => "premium",
        _ => "standard",
    };
    let history = (0..rng.range(8, 14))
        .map(|n| {
            let earn = rng.chance(0.75);
            LoyaltyEvent {
                at: rfc3339(EPOCH - (n as i64 * 17 + rng.range(0, 16) as i64) * DAY),
                kind: if earn { "earned" } else { "redeemed" }.to_owned(),
                points: if earn {
                    rng.range(10, 900) as i64
                } else {
                    -(rng.range(100, 2000) as i64)
                },
                description: if earn {
                    format!("Points for order ORD-{:08}", rng.range(1, 99_999_999))
                } else {
                    "Redeemed for a voucher".to_owned()
                },
            }
        })
        .collect();
    let payment_methods = (0..rng.range(1, 3))
        .map(|n| PaymentMethod {
            id: rng.uuid(),
            kind: "card".to_owned(),
            brand: rng.pick(&["visa", "mastercard", "amex"]).to_string(),
            last4: format!("{:04}", rng.range(0, 9999)),
            expiry_month: rng.range(1, 12) as u8,
            expiry_year: rng.range(2027, 2032) as u16,
            holder_name: full_name.clone(),
            is_default: n == 0,
            billing_address_id: billing,
        })
        .collect();
    let devices = (0..rng.range(1, 3))
        .map(|_| {
            let ios = rng.chance(0.5);
            Device {
                id: rng.uuid(),
                platform: if ios { "ios" } else { "android" }.to_owned(),
                model: if ios {
                    rng.pick(&["iPhone 15", "iPhone 16 Pro", "iPad Air"])
                } else {
                    rng.pick(&["Pixel 9", "Galaxy S25", "Fairphone 5"])
                }
                .to_string(),
                os_version: format!("{}.{}", rng.range(14, 19), rng.range(0, 4)),
                app_version: format!("5.{}.{}", rng.range(0, 12), rng.range(0, 9)),
                push_enabled: rng.chance(0.7),
                last_seen_at: rfc3339(EPOCH - rng.range(0, 90) as i64 * DAY),
            }
        })
        .collect();
    let mut sizes = BTreeMap::new();
    sizes.insert(
        "shirt".to_owned(),
        rng.pick(&["S", "M", "L", "XL"]).to_string(),
    );
    sizes.insert("shoe_eu".to_owned(), rng.range(36, 47).to_string());
    let (_, _, country) = *rng.pick(CITIES);
    User {
        id,
        email: format!(
            "{}.{}{}@example.com",
            first.to_lowercase(),
            last.to_lowercase(),
            i + 1
        ),
        email_verified: rng.chance(0.9),
        first_name: first.to_owned(),
        last_name: last.to_owned(),
        display_name: format!("{first} {}.", &last[..1]),
        avatar_url: format!("https://img.example.com/avatars/{id}.jpg"),
        phone: format!("+1-555-{:04}", rng.range(0, 9999)),
        date_of_birth: format!(
            "{}-{:02}-{:02}",
            rng.range(1950, 2006),
            rng.range(1, 12),
            rng.range(1, 28)
        ),
        locale: rng
            .pick(&["en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "ja-JP"])
            .to_string(),
        timezone: rng
            .pick(&[
                "Europe/Berlin",
                "America/Chicago",
                "Asia/Tokyo",
                "Europe/Lisbon",
            ])
            .to_string(),
        status: "active".to_owned(),
        tier: tier.to_owned(),
        created_at: rfc3339(created),
        updated_at: rfc3339(EPOCH - rng.range(0, 100) as i64 * DAY),
        last_login_at: rfc3339(
            EPOCH - rng.range(0, 30) as i64 * DAY - rng.range(0, DAY as u64) as i64,
        ),
        preferences: Preferences {
            language: rng.pick(&["en", "de", "fr", "es", "ja"]).to_string(),
            currency: rng.pick(CURRENCIES).to_string(),
            theme: rng.pick(&["light", "dark", "system"]).to_string(),
            notifications: Notifications {
                email: rng.chance(0.8),
                push: rng.chance(0.6),
                sms: rng.chance(0.2),
                order_updates: true,
                promotions: rng.chance(0.4),
                price_drops: rng.chance(0.5),
                back_in_stock: rng.chance(0.5),
                quiet_hours_start: "22:00".to_owned(),
                quiet_hours_end: "07:00".to_owned(),
            },
            favorite_categories: rng
                .sample_indexes(CATEGORIES.len(), 3)
                .into_iter()
                .map(|c| CATEGORIES[c].to_owned())
                .collect(),
            sizes,
            accessibility: Accessibility {
                reduced_motion: rng.chance(0.1),
                high_contrast: rng.chance(0.05),
                font_scale: [1.0, 1.0, 1.15, 1.3][rng.range(0, 3) as usize],
                screen_reader_hints: rng.chance(0.05),
            },
            privacy: Privacy {
                personalised_recommendations: rng.chance(0.85),
                share_purchase_history: rng.chance(0.5),
                analytics_consent: rng.chance(0.6),
                consent_updated_at: rfc3339(created + 3 * DAY),
            },
        },
        loyalty: Loyalty {
            program: "Northwind Rewards".to_owned(),
            member_id: format!("NWR-{:09}", rng.range(0, 999_999_999)),
            tier: loyalty_tier.to_owned(),
            points,
            lifetime_points: points + rng.range(0, 80_000),
            member_since: rfc3339(created + DAY),
            next_tier: match loyalty_tier {
                "bronze" => Some("silver".to_owned()),
                "silver" => Some("gold".to_owned()),
                "gold" => Some("platinum".to_owned()),
                _ => None,
            },
            points_to_next_tier: if loyalty_tier == "platinum" {
                0
            } else {
                rng.range(100, 9000)
            },
            benefits: match loyalty_tier {
                "bronze" => vec!["birthday_voucher"],
                "silver" => vec!["birthday_voucher", "free_returns"],
                "gold" => vec!["birthday_voucher", "free_returns", "free_shipping"],
                _ => vec![
                    "birthday_voucher",
                    "free_returns",
                    "free_shipping",
                    "priority_support",
                    "early_access",
                ],
            }
            .into_iter()
            .map(str::to_owned)
            .collect(),
            history,
        },
        payment_methods,
        devices,
        marketing: Marketing {
            newsletter_subscribed: rng.chance(0.5),
            referral_code: format!("REF{:06X}", rng.range(0, 0xFF_FFFF)),
            acquisition_channel: rng
                .pick(&["organic", "paid_search", "social", "referral", "email"])
                .to_string(),
            segments: vec![
                format!("country_{}", country.to_lowercase()),
                format!("tier_{loyalty_tier}"),
            ],
        },
        username,
        addresses,
    }
}

fn gen_product(seed: u64, i: usize) -> Product {
    let mut rng = SeededRng::derive(seed, "product", i as u64);
    let id = rng.uuid();
    let category = *rng.pick(CATEGORIES);
    let brand = *rng.pick(BRANDS);
    let name = format!("{} {} {}", brand, rng.pick(ADJECTIVES), rng.pick(NOUNS));
    let description = (0..rng.range(3, 5))
        .map(|_| *rng.pick(SENTENCES))
        .collect::<Vec<_>>()
        .join(" ");
    let images = (0..rng.range(2, 4))
        .map(|n| Image {
            url: format!("https://img.example.com/products/{id}/{n}.jpg"),
            alt: format!("{name}, view {}", n + 1),
            width: 1600,
            height: 1200,
        })
        .collect();
    let mut attributes = BTreeMap::new();
    attributes.insert(
        "colour".to_owned(),
        rng.pick(&["black", "white", "red", "blue", "green", "grey"])
            .to_string(),
    );
    attributes.insert("weight_g".to_owned(), rng.range(80, 9000).to_string());
    attributes.insert(
        "material".to_owned(),
        rng.pick(&["aluminium", "cotton", "steel", "bamboo", "recycled plastic"])
            .to_string(),
    );
    attributes.insert(
        "origin".to_owned(),
        rng.pick(&["DE", "PT", "JP", "US", "VN", "MX"]).to_string(),
    );
    let created = EPOCH - rng.range(30, 1500) as i64 * DAY;
    Product {
        id,
        sku: format!("{}-{:05}", &category[..3].to_uppercase(), i + 1),
        name,
        description,
        brand: brand.to_owned(),
        category: category.to_owned(),
        images,
        attributes,
        tags: rng
            .sample_indexes(ADJECTIVES.len(), 2)
            .into_iter()
            .map(|a| ADJECTIVES[a].to_lowercase())
            .collect(),
        rating_average: 0.0,
        rating_count: 0,
        created_at: created,
        updated_at: created + rng.range(0, 25) as i64 * DAY,
    }
}

fn gen_price(seed: u64, i: usize, p: &Product) -> Price {
    let mut rng = SeededRng::derive(seed, "price", i as u64);
    let original = rng.range(199, 49_999);
    let discount = if rng.chance(0.3) {
        [5.0, 10.0, 15.0, 20.0, 25.0, 40.0][rng.range(0, 5) as usize]
    } else {
        0.0
    };
    Price {
        product_id: p.id,
        current: discounted(original, discount),
        original,
        currency: rng.pick(CURRENCIES).to_string(),
        discount,
        version: 1,
        updated_at: rfc3339(p.updated_at),
    }
}

/// `original` minus `discount` percent, rounded to the minor unit.
pub fn discounted(original: u64, discount: f64) -> u64 {
    (original as f64 * (100.0 - discount) / 100.0).round() as u64
}

fn gen_stock(seed: u64, i: usize, p: &Product) -> StockLevel {
    let mut rng = SeededRng::derive(seed, "stock", i as u64);
    let warehouses: Vec<WarehouseLevel> = [
        ("wh-ber-1", "Berlin"),
        ("wh-lis-1", "Lisbon"),
        ("wh-aus-1", "Austin"),
    ]
    .iter()
    .map(|(id, loc)| WarehouseLevel {
        warehouse_id: (*id).to_owned(),
        location: (*loc).to_owned(),
        // One product in eight is out of stock everywhere.
        available: if i % 8 == 7 {
            0
        } else {
            rng.range(0, 120) as i64
        },
    })
    .collect();
    StockLevel {
        product_id: p.id,
        available: warehouses.iter().map(|w| w.available).sum(),
        reserved: rng.range(0, 10) as i64,
        warehouses,
        version: 1,
        updated_at: p.updated_at,
    }
}

fn gen_reviews(seed: u64, i: usize, p: &Product, users: &[User]) -> Vec<Review> {
    let mut rng = SeededRng::derive(seed, "reviews", i as u64);
    let bias = rng.range(0, 2) as i64;
    let mut reviews: Vec<Review> = (0..rng.range(0, 30))
        .map(|_| {
            let author = rng.pick(users);
            let rating = (rng.range(1, 5) as i64 + bias).clamp(1, 5) as u8;
            Review {
                id: rng.uuid(),
                product_id: p.id,
                user_id: author.id,
                author_name: author.display_name.clone(),
                rating,
                title: rng.pick(REVIEW_TITLES).to_string(),
                body: (0..rng.range(2, 4))
                    .map(|_| *rng.pick(SENTENCES))
                    .collect::<Vec<_>>()
                    .join(" "),
                locale: author.locale.clone(),
                verified_purchase: rng.chance(0.7),
                helpful_votes: rng.range(0, 250) as u32,
                created_at: rfc3339(p.created_at + rng.range(1, 600) as i64 * DAY),
            }
        })
        .collect();
    reviews.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    reviews
}

fn gen_order(
    seed: u64,
    ui: usize,
    oi: usize,
    user: &User,
    products: &[Product],
    prices: &[Price],
) -> Order {
    let mut rng = SeededRng::derive(seed, "order", (ui as u64) << 16 | oi as u64);
    let id = rng.uuid();
    let created = EPOCH - rng.range(1, 720) as i64 * DAY - rng.range(0, DAY as u64) as i64;
    let currency = user.preferences.currency.clone();
    let item_count = rng.range(1, 5) as usize;
    let items: Vec<OrderItem> = rng
        .sample_indexes(products.len(), item_count)
        .into_iter()
        .map(|pi| {
            let p = &products[pi];
            let quantity = rng.range(1, 3) as u32;
            let unit = prices[pi].original;
            let discount = if rng.chance(0.2) {
                unit / 10 * u64::from(quantity)
            } else {
                0
            };
            OrderItem {
                product_id: p.id,
                sku: p.sku.clone(),
                name: p.name.clone(),
                brand: p.brand.clone(),
                image_url: p.images[0].url.clone(),
                quantity,
                unit_price_minor: unit,
                discount_minor: discount,
                total_minor: unit * u64::from(quantity) - discount,
            }
        })
        .collect();
    let subtotal: u64 = items
        .iter()
        .map(|i| i.unit_price_minor * u64::from(i.quantity))
        .sum();
    let discount: u64 = items.iter().map(|i| i.discount_minor).sum();
    let tax = (subtotal - discount) * 19 / 100;
    let shipping_cost = if subtotal > 5000 { 0 } else { 499 };
    let age_days = (EPOCH - created) / DAY;
    let status = match age_days {
        0..=2 => "paid",
        3..=6 => "shipped",
        _ if rng.chance(0.05) => "cancelled",
        _ if rng.chance(0.05) => "returned",
        _ => "delivered",
    };
    let delivered = matches!(status, "delivered" | "returned");
    let shipped = delivered || status == "shipped";
    let tracking = shipped.then(|| format!("1Z{:016}", rng.range(0, 9_999_999_999_999_999)));
    let pm = &user.payment_methods[0];
    let mut events = vec![OrderEvent {
        at: rfc3339(created),
        status: "placed".to_owned(),
        note: "Order received".to_owned(),
    }];
    events.push(OrderEvent {
        at: rfc3339(created + 600),
        status: "paid".to_owned(),
        note: "Payment captured".to_owned(),
    });
    if shipped {
        events.push(OrderEvent {
            at: rfc3339(created + DAY),
            status: "shipped".to_owned(),
            note: "Handed to carrier".to_owned(),
        });
    }
    if delivered {
        events.push(OrderEvent {
            at: rfc3339(created + 3 * DAY),
            status: "delivered".to_owned(),
            note: "Delivered to the door".to_owned(),
        });
    }
    if status == "cancelled" || status == "returned" {
        events.push(OrderEvent {
            at: rfc3339(created + 5 * DAY),
            status: status.to_owned(),
            note: "Refund issued".to_owned(),
        });
    }
    Order {
        id,
        number: format!(
            "ORD-{}-{:06}",
            2024 + (created - EPOCH + 720 * DAY) / (365 * DAY),
            (ui * 16 + oi) + 1
        ),
        user_id: user.id,
        status: status.to_owned(),
        created_at: rfc3339(created),
        updated_at: events
            .last()
            .map(|e| e.at.clone())
            .unwrap_or_else(|| rfc3339(created)),
        currency,
        subtotal_minor: subtotal,
        discount_minor: discount,
        tax_minor: tax,
        shipping_minor: shipping_cost,
        total_minor: subtotal - discount + tax + shipping_cost,
        items,
        shipping: Shipping {
            method: rng.pick(&["standard", "express", "pickup"]).to_string(),
            carrier: rng.pick(&["DHL", "UPS", "CTT", "FedEx"]).to_string(),
            tracking_url: tracking
                .as_ref()
                .map(|t| format!("https://track.example.com/{t}")),
            tracking_number: tracking,
            address: user.addresses[0].clone(),
            estimated_delivery: rfc3339(created + 3 * DAY),
            delivered_at: delivered.then(|| rfc3339(created + 3 * DAY)),
        },
        payment: Payment {
            method_id: pm.id,
            kind: pm.kind.clone(),
            brand: pm.brand.clone(),
            last4: pm.last4.clone(),
            status: if status == "cancelled" || status == "returned" {
                "refunded"
            } else {
                "captured"
            }
            .to_owned(),
            captured_at: Some(rfc3339(created + 600)),
        },
        events,
    }
}

fn gen_recommendations(
    seed: u64,
    ui: usize,
    products: &[Product],
    prices: &[Price],
) -> Vec<Recommendation> {
    let mut rng = SeededRng::derive(seed, "recommendations", ui as u64);
    let mut scores: Vec<f64> = (0..20)
        .map(|_| (rng.unit() * 1000.0).round() / 1000.0)
        .collect();
    scores.sort_by(|a, b| b.total_cmp(a));
    rng.sample_indexes(products.len(), 20)
        .into_iter()
        .zip(scores)
        .enumerate()
        .map(|(rank, (pi, score))| {
            let p = &products[pi];
            Recommendation {
                rank: rank as u32 + 1,
                product_id: p.id,
                name: p.name.clone(),
                brand: p.brand.clone(),
                category: p.category.clone(),
                image_url: p.images[0].url.clone(),
                price_minor: prices[pi].current,
                currency: prices[pi].currency.clone(),
                rating_average: p.rating_average,
                score,
                reason: rng.pick(REASONS).to_string(),
                algorithm: "collaborative-filtering-v3".to_owned(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_contract() {
        let d = DemoData::generate(DEFAULT_SEED);
        assert_eq!(d.users().len(), USER_COUNT);
        assert_eq!(d.products().len(), PRODUCT_COUNT);
        assert_eq!(d.initial_prices().len(), PRODUCT_COUNT);
        assert_eq!(d.initial_stock().len(), PRODUCT_COUNT);
        let with_orders = d
            .users()
            .iter()
            .filter(|u| d.orders_of(&u.id).is_some_and(|o| o.len() > 0))
            .count();
        assert_eq!(with_orders, 900);
        let profile = serde_json::to_vec(&d.users()[0]).expect("serialises");
        assert!(
            profile.len() > 2_000,
            "a profile is a few KB, got {}",
            profile.len()
        );
    }

    #[test]
    fn orders_are_newest_first_and_totals_add_up() {
        let d = DemoData::generate(3);
        for u in d.users().iter().take(50) {
            let orders: Vec<&Order> = d.orders_of(&u.id).expect("known user").collect();
            assert!(
                orders
                    .windows(2)
                    .all(|w| w[0].created_at >= w[1].created_at)
            );
            for o in orders {
                let items: u64 = o.items.iter().map(|i| i.total_minor).sum();
                assert_eq!(o.total_minor, items + o.tax_minor + o.shipping_minor);
                assert_eq!(d.order(&o.id).map(|x| x.id), Some(o.id));
            }
        }
    }

    #[test]
    fn ids_are_unique() {
        let d = DemoData::generate(DEFAULT_SEED);
        let mut ids: Vec<Uuid> = d
            .users()
            .iter()
            .map(|u| u.id)
            .chain(d.products().iter().map(|p| p.id))
            .collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }
}

#[cfg(test)]
mod determinism {
    use super::*;

    fn world_bytes(d: &DemoData) -> Vec<u8> {
        let orders: Vec<&Order> = d
            .users()
            .iter()
            .flat_map(|u| d.orders_of(&u.id).into_iter().flatten())
            .collect();
        let reviews: Vec<&[Review]> = d
            .products()
            .iter()
            .filter_map(|p| d.reviews_of(&p.id))
            .collect();
        let recs: Vec<&[Recommendation]> = d
            .users()
            .iter()
            .filter_map(|u| d.recommendations_for(&u.id))
            .collect();
        serde_json::to_vec(&(
            d.users(),
            d.products(),
            orders,
            reviews,
            recs,
            d.initial_prices(),
            d.initial_stock(),
        ))
        .expect("serialises")
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let a = world_bytes(&DemoData::generate(DEFAULT_SEED));
        let b = world_bytes(&DemoData::generate(DEFAULT_SEED));
        let c = world_bytes(&DemoData::generate(DEFAULT_SEED + 1));
        assert!(
            a.len() > 1_000_000,
            "the world is a few MB of JSON, got {}",
            a.len()
        );
        assert!(a == b, "same seed, same bytes");
        assert!(a != c, "another seed, other bytes");
    }
}
